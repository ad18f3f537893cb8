//! What the apt and dnf backends share, written once: the log of a job's commands, one job
//! run's per-package results (in target order) and how an early stop fails them, the typed
//! [`BackendError`], the bounded wait for package-manager locks, free space, and the helpers
//! of the pre-flight prediction (scratch directories, disk-space shortfalls, `prediction:`).

use crate::exec::{CommandOutput, Runner};
use crate::timefmt::now_rfc3339;
use patchwarden_core::apt::ParseError;
use patchwarden_core::classify::Finding;
use patchwarden_core::outcome::MAX_EVIDENCE_LINES;
use patchwarden_core::{FailureClass, PackageState};
use patchwarden_wire::agent::{JobResult, PackageResult, PackageTarget};
use patchwarden_wire::{bound_output, MAX_OUTPUT_BYTES};
use rustix::process::{fcntl_getlk, Flock, FlockType};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Budget of the commands that inspect the package database after an install, even when the
/// job's budget ran out.
pub(crate) const INSPECT_BUDGET: Duration = Duration::from_secs(60);
/// Budget of a whole pre-flight check.
pub(crate) const PREFLIGHT_BUDGET: Duration = Duration::from_secs(600);
/// The longest a pre-flight check waits for a package-manager lock.
pub(crate) const PREFLIGHT_LOCK_WAIT: Duration = Duration::from_secs(3);
/// How often a held lock is probed again.
const LOCK_POLL: Duration = Duration::from_millis(250);

/// Why a backend step could not do its part. Each maps to the failure of the targets it
/// stops (class and evidence) as the wire result reports it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A command the agent relies on could not start or was killed.
    #[error("{command} failed: {detail}")]
    CommandKilled {
        command: &'static str,
        detail: String,
    },
    /// A command the agent relies on exited with an error.
    #[error("{command} exited {exit_code:?}: {detail}")]
    CommandFailed {
        command: String,
        exit_code: Option<i32>,
        detail: String,
    },
    /// A command printed what its parser does not understand.
    #[error("{command} output: {source}")]
    Unparsable {
        command: &'static str,
        #[source]
        source: ParseError,
    },
    /// A temporary directory of a pre-flight check could not be created.
    #[error("could not create a temporary {what}: {source}")]
    Scratch {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Another process kept a package-manager lock past the wait.
    #[error("{holder}: still held after waiting {waited_secs} s (lock wait {lock_wait_secs} s); {consequence}")]
    LockHeld {
        holder: String,
        waited_secs: u64,
        lock_wait_secs: u64,
        /// What this means for the job: nothing installed, or what an install would do.
        consequence: String,
    },
    /// An earlier run left the package database half-done.
    #[error("the package database was left interrupted: {}", evidence.join("; "))]
    Interrupted { evidence: Vec<String> },
    /// The repositories could not provide fresh metadata or the packages themselves;
    /// nothing can be installed.
    #[error("the repositories failed ({}): {}", class.as_str(), evidence.join("; "))]
    Repository {
        class: FailureClass,
        evidence: Vec<String>,
        /// The failing command's exit code, when the job reports it.
        exit_code: Option<i32>,
    },
}

impl BackendError {
    /// The class of the packages this error stops.
    pub fn class(&self) -> FailureClass {
        match self {
            BackendError::LockHeld { .. } => FailureClass::LockHeld,
            BackendError::Interrupted { .. } => FailureClass::InterruptedState,
            BackendError::Repository { class, .. } => *class,
            _ => FailureClass::AgentError,
        }
    }

    /// The evidence lines of the packages this error stops.
    pub fn evidence(&self) -> Vec<String> {
        match self {
            BackendError::Interrupted { evidence } | BackendError::Repository { evidence, .. } => {
                evidence.clone()
            }
            other => vec![other.to_string()],
        }
    }

    /// The agent's own failure (the job result's `error`), not the device's.
    pub fn is_agent_error(&self) -> bool {
        self.class() == FailureClass::AgentError
    }

    /// The exit code the job result reports for a run this error stopped.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            BackendError::Repository { exit_code, .. } => *exit_code,
            _ => None,
        }
    }
}

/// What the commands of one job did, in order.
#[derive(Default)]
pub(crate) struct RunLog {
    pub commands: Vec<String>,
    pub output: String,
}

impl RunLog {
    /// A line of the agent's own, in the job output.
    pub fn note(&mut self, line: &str) {
        self.output.push_str(&format!("[agent] {line}\n"));
    }

    pub fn record(&mut self, out: &CommandOutput) {
        self.commands.push(out.command.clone());
        self.output.push_str(&format!("$ {}\n", out.command));
        self.output.push_str(&out.stdout);
        self.output.push_str(&out.stderr);
        match (out.timed_out, out.exit_code) {
            (true, _) => self.output.push_str("[killed: time budget exhausted]\n"),
            (false, Some(c)) => self.output.push_str(&format!("[exit {c}]\n")),
            (false, None) => self.output.push_str("[killed by a signal]\n"),
        }
    }
}

/// Runs `argv` until `deadline` and records it in `log`; a command that cannot start is an
/// output with no exit code and the reason on stderr.
pub(crate) fn run_logged<R: Runner>(
    runner: &R,
    argv: &[&str],
    deadline: Instant,
    log: &mut RunLog,
) -> CommandOutput {
    let out = match runner.run(argv, Some(deadline)) {
        Ok(out) => out,
        Err(e) => CommandOutput {
            command: argv.join(" "),
            exit_code: None,
            stderr: format!(
                "could not start {}: {e}",
                argv.first().copied().unwrap_or("")
            ),
            ..Default::default()
        },
    };
    log.record(&out);
    out
}

/// The last `n` lines of `s`, joined by ` | `.
pub(crate) fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// One install or pre-flight run: its budget, its log, and the per-package results so far.
pub(crate) struct JobRun<'t> {
    targets: &'t [PackageTarget],
    started_at: String,
    start: Instant,
    pub deadline: Instant,
    pub log: RunLog,
    results: BTreeMap<String, PackageResult>,
    /// The version of each target installed before the run (absent: not installed).
    installed_before: BTreeMap<String, String>,
    /// A pre-flight check: every evidence line is a prediction.
    predicting: bool,
}

impl<'t> JobRun<'t> {
    /// An install of `targets` within `budget`.
    pub fn install(targets: &'t [PackageTarget], budget: Duration) -> Self {
        let start = Instant::now();
        JobRun {
            targets,
            started_at: now_rfc3339(),
            start,
            deadline: start + budget,
            log: RunLog::default(),
            results: BTreeMap::new(),
            installed_before: BTreeMap::new(),
            predicting: false,
        }
    }

    /// A pre-flight check of `targets`: changes nothing, every state a prediction.
    pub fn preflight(targets: &'t [PackageTarget]) -> Self {
        let mut job = JobRun::install(targets, PREFLIGHT_BUDGET);
        job.predicting = true;
        job.log
            .note("pre-flight check: every state below is a prediction; nothing is changed");
        job
    }

    pub fn targets(&self) -> &'t [PackageTarget] {
        self.targets
    }

    /// Records what the package database showed before the run, for every target.
    pub fn record_installed(&mut self, version_of: impl Fn(&str) -> Option<String>) {
        for t in self.targets {
            if let Some(v) = version_of(&t.name) {
                self.installed_before.insert(t.name.clone(), v);
            }
        }
    }

    /// The version of `name` installed before the run.
    pub fn installed_before(&self, name: &str) -> Option<String> {
        self.installed_before.get(name).cloned()
    }

    /// Settles one target without touching it (its installed version is the one before).
    pub fn settle(
        &mut self,
        target: &PackageTarget,
        state: PackageState,
        class: Option<FailureClass>,
        to_version: Option<String>,
        evidence: Vec<String>,
    ) {
        let from = self.installed_before(&target.name);
        self.set(PackageResult {
            package: target.name.clone(),
            state,
            class,
            from_version: from.clone(),
            to_version,
            installed_version: from,
            evidence,
        });
    }

    /// Settles a target the device already has at (or above) its target version `v`.
    pub fn settle_already_at(&mut self, target: &PackageTarget, installed: &str, v: &str) {
        self.settle(
            target,
            PackageState::NotApplicable,
            None,
            Some(v.to_owned()),
            vec![format!("already at {installed} (target {v})")],
        );
    }

    /// Sets a target's result (evidence bounded, and marked as a prediction in a pre-flight).
    pub fn set(&mut self, mut result: PackageResult) {
        if self.predicting {
            result.evidence = result.evidence.iter().map(predicted).collect();
        }
        result.evidence.truncate(MAX_EVIDENCE_LINES);
        self.results.insert(result.package.clone(), result);
    }

    /// Fails `targets` with `error`'s class and evidence, nothing changed.
    pub fn fail(&mut self, targets: &[&PackageTarget], error: &BackendError) {
        let (class, evidence) = (error.class(), error.evidence());
        for t in targets {
            self.settle(
                t,
                PackageState::Failed,
                Some(class),
                t.version.clone(),
                evidence.clone(),
            );
        }
    }

    /// The run stopped at `error`: the targets not settled yet fail with it.
    pub fn stop(mut self, error: BackendError) -> JobResult {
        let open: Vec<&PackageTarget> = self
            .targets
            .iter()
            .filter(|t| !self.results.contains_key(&t.name))
            .collect();
        self.fail(&open, &error);
        let job_error = error.is_agent_error().then(|| error.to_string());
        // A pre-flight check reports no exit code: nothing it ran was the install.
        let exit_code = if self.predicting {
            None
        } else {
            error.exit_code()
        };
        self.finish(exit_code, job_error)
    }

    /// The job result: packages in the order the job listed them.
    pub fn finish(mut self, exit_code: Option<i32>, error: Option<String>) -> JobResult {
        let packages = self
            .targets
            .iter()
            .filter_map(|t| self.results.remove(&t.name))
            .collect();
        JobResult {
            started_at: self.started_at,
            finished_at: now_rfc3339(),
            commands: self.log.commands,
            exit_code,
            duration_ms: u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX),
            output: bound_output(&self.log.output, MAX_OUTPUT_BYTES),
            packages,
            error,
            boot_id: None,
        }
    }
}

/// Marks an evidence line as a prediction (once).
pub(crate) fn predicted(line: impl AsRef<str>) -> String {
    let line = line.as_ref();
    if line.starts_with("prediction:") {
        line.to_owned()
    } else {
        format!("prediction: {line}")
    }
}

/// The holder of the fcntl write lock on `path`, described (`None`: free, or no such file).
/// `F_GETLK` tests without taking the lock, so a probe never makes another apt or rpm fail.
/// With `name_process`, the holder's command name is added when it is visible.
pub(crate) fn fcntl_lock_holder(path: &Path, shown_as: &str, name_process: bool) -> Option<String> {
    let file = fs::File::open(path).ok()?;
    let probe = Flock::from(FlockType::WriteLock);
    let holder = fcntl_getlk(&file, &probe).ok()??;
    if holder.typ == FlockType::Unlocked {
        return None;
    }
    // The pid is 0 (None) when the holder is in another PID namespace.
    Some(match holder.pid {
        Some(pid) if name_process => {
            let pid = pid.as_raw_nonzero();
            let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_owned())
                .unwrap_or_else(|_| "?".into());
            format!("{shown_as} is locked by process {pid} ({comm})")
        }
        Some(pid) => format!("{shown_as} is locked by process {}", pid.as_raw_nonzero()),
        None => format!("{shown_as} is locked by another process"),
    })
}

/// Waits until `held_lock` finds no package-manager lock held, for at most `wait` and never
/// past `deadline`. A lock released meanwhile is noted in the log; one still held is a
/// [`BackendError::LockHeld`] whose evidence ends with `consequence`.
pub(crate) fn wait_for_locks(
    mut held_lock: impl FnMut() -> Option<String>,
    wait: Duration,
    deadline: Instant,
    log: &mut RunLog,
    consequence: &str,
) -> Result<(), BackendError> {
    let start = Instant::now();
    let until = (start + wait).min(deadline);
    let mut first: Option<String> = None;
    loop {
        let Some(held) = held_lock() else {
            if let Some(first) = first {
                let waited = start.elapsed().as_secs_f32();
                log.note(&format!("{first}; it was released after {waited:.1} s"));
                info!(waited_secs = waited, "package-manager lock released");
            }
            return Ok(());
        };
        if first.is_none() {
            info!(lock = %held, wait_secs = wait.as_secs(), "waiting for the package-manager lock");
            first = Some(held.clone());
        }
        if Instant::now() >= until {
            let error = BackendError::LockHeld {
                holder: held.clone(),
                waited_secs: start.elapsed().as_secs(),
                lock_wait_secs: wait.as_secs(),
                consequence: consequence.to_owned(),
            };
            log.note(&error.to_string());
            warn!(class = "lock_held", lock = %held, waited_secs = start.elapsed().as_secs(), "giving up on the package-manager lock");
            return Err(error);
        }
        std::thread::sleep(LOCK_POLL);
    }
}

/// Notes `evidence` of an interrupted package database in the log, as the error that stops
/// the run before anything is built on it.
pub(crate) fn refuse_interrupted(
    evidence: Option<Vec<String>>,
    log: &mut RunLog,
) -> Result<(), BackendError> {
    let Some(evidence) = evidence else {
        return Ok(());
    };
    for line in &evidence {
        log.note(line);
    }
    Err(BackendError::Interrupted { evidence })
}

/// The class and evidence of a failed metadata refresh (`tool` names it): a timeout, else
/// `finding` (the classifier's main one), else `unknown` with the exit code.
pub(crate) fn refresh_failure(
    out: &CommandOutput,
    tool: &str,
    finding: Option<Finding>,
) -> (FailureClass, Vec<String>) {
    if out.timed_out {
        return (
            FailureClass::Timeout,
            vec![format!("{tool} ran out of the time budget")],
        );
    }
    match finding {
        Some(f) => (f.class, f.evidence),
        None => (
            FailureClass::Unknown,
            vec![format!("{tool} exited {:?}", out.exit_code)],
        ),
    }
}

/// The class and evidence of one target of a simulated install that failed: the finding
/// naming the package, else one naming none, else the first; `tool` names the simulation.
pub(crate) fn simulated_failure(
    findings: &[Finding],
    package: &str,
    sim: &CommandOutput,
    tool: &str,
) -> (FailureClass, Vec<String>) {
    let chosen = findings
        .iter()
        .find(|f| f.package.as_deref() == Some(package))
        .or_else(|| findings.iter().find(|f| f.package.is_none()))
        .or_else(|| findings.first());
    let (class, mut evidence) = match chosen {
        Some(f) => (f.class, f.evidence.clone()),
        None => (
            FailureClass::Unknown,
            vec![format!(
                "{tool} exited {:?} with no recognised message",
                sim.exit_code
            )],
        ),
    };
    if sim.timed_out {
        evidence.push("the simulation ran out of the time budget".into());
    }
    evidence.insert(
        0,
        "the simulated install fails; nothing would be installed".into(),
    );
    (class, evidence)
}

/// Free bytes (for root) and the filesystem id of the filesystem holding `path`.
pub(crate) fn free_space(path: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some((s.f_bavail.saturating_mul(s.f_frsize), s.f_fsid))
}

/// The space a transaction needs and has: bytes to download into the package cache, growth
/// of the installed size, and (free bytes, filesystem id) of the cache and of /.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpaceCheck {
    pub download: u64,
    pub growth: u64,
    pub cache: Option<(u64, u64)>,
    pub root: Option<(u64, u64)>,
}

impl SpaceCheck {
    /// Why the transaction would run out of space (empty: it fits). `cache_line(download,
    /// free)` words the cache's shortfall; `downloads` names what shares / with the growth
    /// when the cache is on the root filesystem ("archives", "downloads").
    pub fn shortfalls(
        &self,
        cache_line: impl Fn(u64, u64) -> String,
        downloads: &str,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some((free, _)) = self.cache {
            if self.download > free {
                lines.push(cache_line(self.download, free));
            }
        }
        if let Some((free, fsid)) = self.root {
            let shared = self.cache.is_some_and(|(_, c)| c == fsid);
            let need = self.growth + if shared { self.download } else { 0 };
            if need > free {
                let plus = if shared {
                    format!(" plus {downloads}")
                } else {
                    String::new()
                };
                lines.push(format!(
                    "the install needs {need} bytes more on / (unpacked{plus}), only {free} bytes are free"
                ));
            }
        }
        lines
    }

    pub fn cache_free(&self) -> u64 {
        self.cache.map(|c| c.0).unwrap_or(0)
    }

    pub fn root_free(&self) -> u64 {
        self.root.map(|r| r.0).unwrap_or(0)
    }
}

/// Growth of the installed size: new sizes minus the sizes installed now, at least 0.
pub(crate) fn size_growth<'a>(
    changes: impl Iterator<Item = (&'a str, u64)>,
    installed: &BTreeMap<String, u64>,
) -> u64 {
    let growth: i64 = changes
        .map(|(name, new)| new as i64 - installed.get(name).copied().unwrap_or(0) as i64)
        .sum();
    growth.max(0) as u64
}

/// A temporary directory of a pre-flight check (scratch package lists, a throwaway cache),
/// removed on drop.
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `TMP/NAME-PID-N`, empty, with `subdirs` created.
    pub fn new(name: &str, subdirs: &[&str]) -> std::io::Result<ScratchDir> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        for sub in subdirs {
            fs::create_dir_all(dir.join(sub))?;
        }
        Ok(ScratchDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, version: Option<&str>) -> PackageTarget {
        PackageTarget {
            name: name.into(),
            version: version.map(Into::into),
        }
    }

    #[test]
    fn every_line_is_marked_as_a_prediction() {
        assert_eq!(predicted("held"), "prediction: held");
        assert_eq!(predicted("prediction: x"), "prediction: x");
    }

    #[test]
    fn last_lines_joins_the_tail() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b | c");
        assert_eq!(last_lines("a", 5), "a");
        assert_eq!(last_lines("", 2), "");
    }

    #[test]
    fn a_stop_fails_the_open_targets_with_the_errors_class_and_evidence() {
        let targets = [
            target("a", Some("2")),
            target("b", None),
            target("c", Some("3")),
        ];
        // (error, class, evidence, job error, exit code)
        let cases = [
            (
                BackendError::LockHeld {
                    holder: "/var/lib/dpkg/lock is locked by process 7 (apt-get)".into(),
                    waited_secs: 3,
                    lock_wait_secs: 3,
                    consequence: "nothing was installed".into(),
                },
                FailureClass::LockHeld,
                "/var/lib/dpkg/lock is locked by process 7 (apt-get): still held after waiting 3 s (lock wait 3 s); nothing was installed",
                false,
                None,
            ),
            (
                BackendError::Interrupted {
                    evidence: vec!["dpkg was interrupted".into()],
                },
                FailureClass::InterruptedState,
                "dpkg was interrupted",
                false,
                None,
            ),
            (
                BackendError::Repository {
                    class: FailureClass::RepoUnreachable,
                    evidence: vec!["Connection refused".into()],
                    exit_code: Some(1),
                },
                FailureClass::RepoUnreachable,
                "Connection refused",
                false,
                Some(1),
            ),
            (
                BackendError::CommandFailed {
                    command: "rpm -qa".into(),
                    exit_code: Some(1),
                    detail: "db locked".into(),
                },
                FailureClass::AgentError,
                "rpm -qa exited Some(1): db locked",
                true,
                None,
            ),
        ];
        for (error, class, evidence, agent_error, exit) in cases {
            let mut job = JobRun::install(&targets, Duration::from_secs(60));
            job.record_installed(|n| (n != "b").then(|| "1".to_owned()));
            job.settle(
                &targets[2],
                PackageState::NotApplicable,
                None,
                None,
                vec!["x".into()],
            );
            let r = job.stop(error);
            let rows: Vec<_> = r
                .packages
                .iter()
                .map(|p| {
                    (
                        p.package.as_str(),
                        p.state,
                        p.class,
                        p.installed_version.as_deref(),
                    )
                })
                .collect();
            assert_eq!(
                rows,
                [
                    ("a", PackageState::Failed, Some(class), Some("1")),
                    ("b", PackageState::Failed, Some(class), None),
                    ("c", PackageState::NotApplicable, None, Some("1")),
                ]
            );
            assert_eq!(r.packages[0].evidence, [evidence]);
            assert_eq!(r.packages[0].to_version.as_deref(), Some("2"));
            assert_eq!(r.error.is_some(), agent_error, "{:?}", r.error);
            assert_eq!(r.exit_code, exit);
        }
    }

    #[test]
    fn a_preflight_marks_and_bounds_evidence() {
        let targets = [target("a", Some("2"))];
        let mut job = JobRun::preflight(&targets);
        let many: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
        job.settle(&targets[0], PackageState::Verified, None, None, many);
        let r = job.finish(None, None);
        assert_eq!(r.packages[0].evidence.len(), MAX_EVIDENCE_LINES);
        assert!(r.packages[0]
            .evidence
            .iter()
            .all(|e| e.starts_with("prediction: ")));
        assert!(r.output.contains("[agent] pre-flight check"));
    }

    #[test]
    fn space_shortfalls_count_downloads_on_a_shared_root() {
        let cache = |d: u64, f: u64| format!("cache needs {d}, has {f}");
        let fits = SpaceCheck {
            download: 10,
            growth: 10,
            cache: Some((100, 1)),
            root: Some((100, 1)),
        };
        assert!(fits.shortfalls(cache, "archives").is_empty());
        let shared = SpaceCheck {
            download: 60,
            growth: 50,
            cache: Some((100, 1)),
            root: Some((100, 1)),
        };
        assert_eq!(
            shared.shortfalls(cache, "archives"),
            ["the install needs 110 bytes more on / (unpacked plus archives), only 100 bytes are free"]
        );
        let apart = SpaceCheck {
            download: 200,
            growth: 50,
            cache: Some((100, 2)),
            root: Some((100, 1)),
        };
        assert_eq!(
            apart.shortfalls(cache, "downloads"),
            ["cache needs 200, has 100"]
        );
        let unknown = SpaceCheck {
            download: 200,
            growth: 200,
            cache: None,
            root: None,
        };
        assert!(unknown.shortfalls(cache, "archives").is_empty());
        let installed = BTreeMap::from([("a".to_owned(), 100u64)]);
        assert_eq!(
            size_growth([("a", 150), ("b", 10)].into_iter(), &installed),
            60
        );
        assert_eq!(size_growth([("a", 10)].into_iter(), &installed), 0);
    }

    #[test]
    fn a_lock_wait_gives_up_with_evidence_or_notes_the_release() {
        let mut log = RunLog::default();
        let err = wait_for_locks(
            || Some("L is locked by another process".into()),
            Duration::from_millis(300),
            Instant::now() + Duration::from_secs(10),
            &mut log,
            "nothing was installed",
        )
        .expect_err("still held");
        assert_eq!(err.class(), FailureClass::LockHeld);
        assert_eq!(
            err.to_string(),
            "L is locked by another process: still held after waiting 0 s (lock wait 0 s); nothing was installed"
        );
        let mut probes = 0;
        wait_for_locks(
            || {
                probes += 1;
                (probes < 3).then(|| "L is locked".to_owned())
            },
            Duration::from_secs(10),
            Instant::now() + Duration::from_secs(10),
            &mut log,
            "",
        )
        .expect("released");
        assert!(
            log.output
                .contains("[agent] L is locked; it was released after"),
            "{}",
            log.output
        );
    }
}
