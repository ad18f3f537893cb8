//! apt/dpkg driven through their command-line tools (never libapt): `dpkg-query`, `apt-get`,
//! `apt-cache`, `apt-mark`. Parsing and decisions live in `patchwarden_core`.

use super::{InstallOptions, PackageManager};
use crate::exec::{CommandOutput, Runner};
use crate::inventory::{canonicalize, collect_host_facts, reboot_required_packages, HostPaths};
use crate::timefmt::now_rfc3339;
use patchwarden_core::apt::{
    is_broken_status, is_present_status, parse_apt_cache_policy, parse_apt_simulation,
    parse_dpkg_query, parse_showhold, DpkgEntry, DPKG_QUERY_FORMAT,
};
use patchwarden_core::classify::{classify_apt, primary};
use patchwarden_core::outcome::{decide_with_findings, PkgDb, RunEvidence, MAX_EVIDENCE_LINES};
use patchwarden_core::version::compare_deb;
use patchwarden_core::{FailureClass, PackageState};
use patchwarden_wire::agent::{
    InstalledPackage, Inventory, JobResult, PackageManagerHealth, PackageResult, PackageTarget,
    UpgradablePackage,
};
use patchwarden_wire::{bound_output, MAX_OUTPUT_BYTES};
use rustix::process::{fcntl_getlk, Flock, FlockType};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;
use std::time::{Duration, Instant};
use tracing::{info, warn};

mod preflight;

/// Budget of each inventory command.
const INVENTORY_COMMAND_BUDGET: Duration = Duration::from_secs(120);
/// Budget of the commands that inspect dpkg after an install, even when the job's budget ran out.
const INSPECT_BUDGET: Duration = Duration::from_secs(60);

const DPKG_OPTIONS: [&str; 4] = [
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
];

pub struct Apt<R: Runner> {
    runner: R,
    paths: HostPaths,
    /// The last simulation and the fingerprint of the files it depended on: `apt-get -s
    /// dist-upgrade` takes seconds on a big system, and a check-in runs every minute.
    sim_cache: Mutex<Option<(Vec<FileStamp>, CommandOutput)>>,
    /// How long a job waits for another apt/dpkg to release its locks.
    lock_wait: Duration,
}

/// The locks apt and dpkg take (fcntl write locks over the whole file): the frontend lock
/// first, as apt takes them.
const LOCK_FILES: [&str; 4] = [
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/dpkg/lock",
    "/var/lib/apt/lists/lock",
    "/var/cache/apt/archives/lock",
];
/// How often a held lock is probed again.
const LOCK_POLL: Duration = Duration::from_millis(250);
/// dpkg's journal: files named by digits only, merged into `status` when dpkg exits cleanly.
const DPKG_JOURNAL: &str = "/var/lib/dpkg/updates";

/// Files whose change can change what apt would upgrade: the dpkg database (versions, holds),
/// the package lists, and apt's configuration.
const SIMULATION_INPUTS: [&str; 7] = [
    "/var/lib/dpkg/status",
    "/var/lib/apt/lists",
    "/var/lib/apt/extended_states",
    "/etc/apt/sources.list",
    "/etc/apt/sources.list.d",
    "/etc/apt/preferences.d",
    "/etc/apt/apt.conf.d",
];

type FileStamp = (PathBuf, Option<SystemTime>, u64);

impl<R: Runner> Apt<R> {
    pub fn new(runner: R, paths: HostPaths) -> Self {
        Apt {
            runner,
            paths,
            sim_cache: Mutex::new(None),
            lock_wait: crate::pkg::DEFAULT_LOCK_WAIT,
        }
    }

    /// How long a job waits for the package-manager locks (`run --lock-wait`).
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The first held package-manager lock, described (`None`: all free). Uses `F_GETLK`,
    /// which tests without taking the lock, so a probe never makes an administrator's apt fail.
    fn held_lock(&self) -> Option<String> {
        LOCK_FILES.iter().find_map(|path| {
            let file = fs::File::open(self.paths.at(path)).ok()?;
            let probe = Flock::from(FlockType::WriteLock);
            let holder = fcntl_getlk(&file, &probe).ok()??;
            if holder.typ == FlockType::Unlocked {
                return None;
            }
            // The pid is 0 (None) when the holder is in another PID namespace.
            Some(match holder.pid {
                Some(pid) => {
                    let comm = fs::read_to_string(format!("/proc/{}/comm", pid.as_raw_nonzero()))
                        .map(|c| c.trim().to_owned())
                        .unwrap_or_else(|_| "?".into());
                    format!(
                        "{path} is locked by process {} ({comm})",
                        pid.as_raw_nonzero()
                    )
                }
                None => format!("{path} is locked by another process"),
            })
        })
    }

    /// Waits until no package-manager lock is held, for at most the lock wait (and never past
    /// `deadline`). `Err` carries the evidence when a lock is still held.
    fn wait_for_locks(&self, deadline: Instant, log: &mut RunLog) -> Result<(), Vec<String>> {
        let start = Instant::now();
        let until = (start + self.lock_wait).min(deadline);
        let mut first: Option<String> = None;
        loop {
            let Some(held) = self.held_lock() else {
                if let Some(first) = first {
                    let waited = start.elapsed().as_secs_f32();
                    log.note(&format!("{first}; it was released after {waited:.1} s"));
                    info!(waited_secs = waited, "package-manager lock released");
                }
                return Ok(());
            };
            if first.is_none() {
                info!(lock = %held, wait_secs = self.lock_wait.as_secs(), "waiting for the package-manager lock");
                first = Some(held.clone());
            }
            if Instant::now() >= until {
                let waited = start.elapsed().as_secs();
                let line = format!(
                    "{held}: still held after waiting {waited} s (lock wait {} s); nothing was installed",
                    self.lock_wait.as_secs()
                );
                log.note(&line);
                warn!(class = "lock_held", lock = %held, waited_secs = waited, "giving up on the package-manager lock");
                return Err(vec![line]);
            }
            std::thread::sleep(LOCK_POLL);
        }
    }

    /// Evidence that dpkg was interrupted: journal entries left in /var/lib/dpkg/updates (apt
    /// refuses to run until `dpkg --configure -a`), or packages dpkg marks half-installed or
    /// reinstall-required. `None` when the database is consistent.
    fn interrupted_evidence(&self, entries: &[DpkgEntry]) -> Option<Vec<String>> {
        let journal = journal_entries(&self.paths);
        let stuck: Vec<&DpkgEntry> = entries
            .iter()
            .filter(|e| {
                let b = e.status.as_bytes();
                b.get(1) == Some(&b'H') || b.get(2) == Some(&b'R')
            })
            .collect();
        if journal == 0 && stuck.is_empty() {
            return None;
        }
        let mut evidence = Vec::new();
        if journal > 0 {
            evidence.push(format!(
                "dpkg was interrupted: {DPKG_JOURNAL} holds {journal} journal entries; `dpkg --configure -a` must run before anything is installed"
            ));
        }
        for e in entries.iter().filter(|e| is_broken_status(&e.status)) {
            evidence.push(format!("dpkg: {} {} {}", e.name, e.version, e.status));
        }
        if journal == 0 {
            evidence.push("dpkg left half-installed packages: the database needs `dpkg --configure -a` or a reinstall".into());
        }
        Some(evidence)
    }

    /// Modification times and sizes of the simulation's inputs (and of a directory's entries).
    fn simulation_fingerprint(&self) -> Vec<FileStamp> {
        let mut stamps = Vec::new();
        let stamp = |p: PathBuf| {
            let m = fs::metadata(&p).ok();
            let mtime = m.as_ref().and_then(|m| m.modified().ok());
            let len = m.map(|m| m.len()).unwrap_or(0);
            (p, mtime, len)
        };
        for input in SIMULATION_INPUTS {
            let path = self.paths.at(input);
            if let Ok(entries) = fs::read_dir(&path) {
                let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                children.sort();
                stamps.extend(children.into_iter().map(stamp));
            }
            stamps.push(stamp(path));
        }
        stamps
    }

    fn simulate(&self, deadline: Instant, log: &mut RunLog) -> CommandOutput {
        let fingerprint = self.simulation_fingerprint();
        let mut cache = self.sim_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((fp, out)) = cache.as_ref() {
            if *fp == fingerprint {
                return out.clone();
            }
        }
        // Debug::NoLocking lets the simulation run while another apt holds the lock.
        let out = self.run(
            &["apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade"],
            deadline,
            log,
        );
        *cache = out.success().then(|| (fingerprint, out.clone()));
        out
    }

    fn run(&self, argv: &[&str], deadline: Instant, log: &mut RunLog) -> CommandOutput {
        let out = match self.runner.run(argv, Some(deadline)) {
            Ok(out) => out,
            Err(e) => CommandOutput {
                command: argv.join(" "),
                exit_code: None,
                stderr: format!("could not start {}: {e}", argv[0]),
                ..Default::default()
            },
        };
        log.record(&out);
        out
    }

    /// dpkg's view of `names` (all packages when empty). dpkg-query exits 1 when some name is
    /// unknown but still prints the others, so stdout is parsed whatever the exit code.
    fn dpkg_query(
        &self,
        names: &[&str],
        deadline: Instant,
        log: &mut RunLog,
    ) -> Result<Vec<DpkgEntry>, String> {
        let format = format!("-f={DPKG_QUERY_FORMAT}");
        let mut argv = vec!["dpkg-query", "-W", format.as_str()];
        argv.extend(names.iter().copied());
        let out = self.run(&argv, deadline, log);
        if out.exit_code.is_none() {
            return Err(format!("dpkg-query failed: {}", out.stderr.trim()));
        }
        parse_dpkg_query(&out.stdout).map_err(|e| format!("dpkg-query output: {e}"))
    }

    /// Makes sure `names` are still held after an install that overrode their holds; says
    /// what it found, for the evidence.
    fn keep_holds(&self, names: &[&str], log: &mut RunLog) -> String {
        let deadline = Instant::now() + INSPECT_BUDGET;
        let held = match self.held(deadline, log) {
            Ok(h) => h,
            Err(e) => return format!("could not check the hold afterwards: {e}"),
        };
        let lost: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !held.iter().any(|h| h == n))
            .collect();
        if lost.is_empty() {
            return "the hold is kept".into();
        }
        let mut argv = vec!["apt-mark", "hold"];
        argv.extend(lost.iter().copied());
        let out = self.run(&argv, deadline, log);
        if out.success() {
            "the hold was set again after the install (apt-mark hold)".into()
        } else {
            warn!(packages = %lost.join(" "), "could not hold packages again");
            format!(
                "the install cleared the hold and apt-mark hold exited {:?}: {}",
                out.exit_code,
                last_lines(&out.stderr, 2)
            )
        }
    }

    fn held(&self, deadline: Instant, log: &mut RunLog) -> Result<Vec<String>, String> {
        let out = self.run(&["apt-mark", "showhold"], deadline, log);
        if !out.success() {
            return Err(format!(
                "apt-mark showhold exited {:?}: {}",
                out.exit_code,
                out.stderr.trim()
            ));
        }
        Ok(parse_showhold(&out.stdout))
    }
}

/// Accumulates what the commands of one job did.
#[derive(Default)]
struct RunLog {
    commands: Vec<String>,
    output: String,
}

impl RunLog {
    /// A line of the agent's own, in the job output.
    fn note(&mut self, line: &str) {
        self.output.push_str(&format!("[agent] {line}\n"));
    }

    fn record(&mut self, out: &CommandOutput) {
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

/// Number of dpkg journal entries (files named by digits only, as apt counts them).
pub(crate) fn journal_entries(paths: &HostPaths) -> usize {
    fs::read_dir(paths.at(DPKG_JOURNAL))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
}

fn db_of(entries: &[DpkgEntry], name: &str) -> PkgDb {
    // Prefer an entry with files on disk when several architectures are known.
    let mut matching = entries.iter().filter(|e| e.name == name);
    let best = matching
        .clone()
        .find(|e| is_present_status(&e.status))
        .or_else(|| matching.next());
    match best {
        Some(e) if is_present_status(&e.status) && !e.version.is_empty() => PkgDb {
            version: Some(e.version.clone()),
            status: Some(e.status.clone()),
        },
        _ => PkgDb::default(),
    }
}

fn result(
    package: &str,
    state: PackageState,
    class: Option<FailureClass>,
    from: &PkgDb,
    to: Option<String>,
    evidence: Vec<String>,
) -> PackageResult {
    let mut evidence = evidence;
    evidence.truncate(MAX_EVIDENCE_LINES);
    PackageResult {
        package: package.to_owned(),
        state,
        class,
        from_version: from.version.clone(),
        to_version: to,
        installed_version: from.version.clone(),
        evidence,
    }
}

impl<R: Runner> PackageManager for Apt<R> {
    fn name(&self) -> &'static str {
        "apt"
    }

    fn collect_inventory(&self) -> Inventory {
        let mut inv = Inventory {
            package_manager: "apt".into(),
            ..Default::default()
        };
        collect_host_facts(&self.paths, &mut inv);
        let deadline = Instant::now() + INVENTORY_COMMAND_BUDGET;
        let mut log = RunLog::default();

        let entries = match self.dpkg_query(&[], deadline, &mut log) {
            Ok(e) => e,
            Err(e) => {
                inv.collection_errors.push(e);
                Vec::new()
            }
        };
        let mut health = PackageManagerHealth::default();
        for e in &entries {
            if is_broken_status(&e.status) {
                health.broken_packages.push(e.name.clone());
                health
                    .evidence
                    .push(format!("dpkg: {} {} {}", e.name, e.version, e.status));
            }
        }
        let pending = journal_entries(&self.paths);
        if pending > 0 {
            health.interrupted = true;
            health.evidence.push(format!(
                "{DPKG_JOURNAL} holds {pending} journal entries: dpkg was interrupted (`dpkg --configure -a` needed)"
            ));
        }
        health.evidence.truncate(MAX_EVIDENCE_LINES);
        inv.health = health;
        inv.packages = entries
            .iter()
            .filter(|e| is_present_status(&e.status))
            .map(|e| InstalledPackage {
                name: e.name.clone(),
                source: e.source.clone(),
                version: e.version.clone(),
                source_version: e.source_version.clone(),
                arch: e.arch.clone(),
                status: e.status.clone(),
            })
            .collect();

        let sim = self.simulate(deadline, &mut log);
        if sim.success() {
            inv.upgradable = parse_apt_simulation(&sim.stdout)
                .into_iter()
                .filter_map(|s| {
                    Some(UpgradablePackage {
                        installed_version: s.old_version?,
                        name: s.name,
                        candidate_version: s.new_version,
                        arch: s.arch,
                        security: s.security,
                        origins: s.origins,
                        held: false,
                    })
                })
                .collect();
        } else {
            inv.collection_errors.push(format!(
                "apt-get -s dist-upgrade exited {:?}: {}",
                sim.exit_code,
                last_lines(&sim.stderr, 3)
            ));
        }

        match self.held(deadline, &mut log) {
            Ok(held) => {
                if !held.is_empty() {
                    let mut argv = vec!["apt-cache", "policy"];
                    argv.extend(held.iter().map(String::as_str));
                    let policy = self.run(&argv, deadline, &mut log);
                    for p in parse_apt_cache_policy(&policy.stdout) {
                        let (Some(installed), Some(candidate)) = (p.installed, p.candidate) else {
                            continue;
                        };
                        if compare_deb(&candidate, &installed) != Some(Ordering::Greater) {
                            continue;
                        }
                        let arch = entries
                            .iter()
                            .find(|e| e.name == p.name)
                            .map(|e| e.arch.clone())
                            .unwrap_or_default();
                        inv.upgradable.push(UpgradablePackage {
                            name: p.name,
                            installed_version: installed,
                            candidate_version: candidate,
                            arch,
                            // apt-cache policy does not name origins the way the simulation does.
                            security: false,
                            origins: vec![],
                            held: true,
                        });
                    }
                }
                inv.held = held;
            }
            Err(e) => inv.collection_errors.push(e),
        }
        canonicalize(&mut inv);
        inv
    }

    fn preflight(&self, targets: &[PackageTarget], options: InstallOptions) -> JobResult {
        self.run_preflight(targets, options)
    }

    fn install(
        &self,
        targets: &[PackageTarget],
        budget: Duration,
        options: InstallOptions,
    ) -> JobResult {
        let started_at = now_rfc3339();
        let start = Instant::now();
        let deadline = start + budget;
        let mut log = RunLog::default();
        let mut results: BTreeMap<String, PackageResult> = BTreeMap::new();
        let finish = |log: RunLog,
                      exit_code: Option<i32>,
                      results: BTreeMap<String, PackageResult>,
                      error: Option<String>| {
            // Results in the order the job listed the targets.
            let mut packages: Vec<PackageResult> = Vec::new();
            let mut results = results;
            for t in targets {
                if let Some(r) = results.remove(&t.name) {
                    packages.push(r);
                }
            }
            JobResult {
                started_at: started_at.clone(),
                finished_at: now_rfc3339(),
                commands: log.commands,
                exit_code,
                duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                output: bound_output(&log.output, MAX_OUTPUT_BYTES),
                packages,
                error,
                boot_id: None,
            }
        };
        let fail_all = |results: &mut BTreeMap<String, PackageResult>,
                        names: &[&PackageTarget],
                        before: &[DpkgEntry],
                        class: FailureClass,
                        evidence: &[String]| {
            for t in names {
                let db = db_of(before, &t.name);
                results.insert(
                    t.name.clone(),
                    result(
                        &t.name,
                        PackageState::Failed,
                        Some(class),
                        &db,
                        t.version.clone(),
                        evidence.to_vec(),
                    ),
                );
            }
        };

        // 1. What is installed now (every package: the health check below needs them all),
        //    and what is held.
        let before = match self.dpkg_query(&[], deadline, &mut log) {
            Ok(b) => b,
            Err(e) => {
                let all: Vec<&PackageTarget> = targets.iter().collect();
                fail_all(
                    &mut results,
                    &all,
                    &[],
                    FailureClass::AgentError,
                    std::slice::from_ref(&e),
                );
                return finish(log, None, results, Some(e));
            }
        };
        let held = self.held(deadline, &mut log).unwrap_or_else(|e| {
            warn!(error = %e, "could not list held packages");
            Vec::new()
        });

        let mut remaining: Vec<&PackageTarget> = Vec::new();
        // Held targets the deployment overrides (`respect_holds: false`).
        let mut overridden: Vec<&str> = Vec::new();
        for t in targets {
            let db = db_of(&before, &t.name);
            let Some(installed) = db.version.clone() else {
                results.insert(
                    t.name.clone(),
                    result(
                        &t.name,
                        PackageState::NotApplicable,
                        None,
                        &db,
                        t.version.clone(),
                        vec!["not installed".into()],
                    ),
                );
                continue;
            };
            if held.contains(&t.name) {
                if !options.respect_holds {
                    overridden.push(t.name.as_str());
                } else {
                    results.insert(
                        t.name.clone(),
                        result(
                            &t.name,
                            PackageState::Skipped,
                            Some(FailureClass::HeldBack),
                            &db,
                            t.version.clone(),
                            vec!["held by apt-mark hold".into()],
                        ),
                    );
                    continue;
                }
            }
            if let Some(v) = &t.version {
                if matches!(
                    compare_deb(&installed, v),
                    Some(Ordering::Equal | Ordering::Greater)
                ) && db
                    .status
                    .as_deref()
                    .is_some_and(patchwarden_core::apt::is_clean_status)
                {
                    results.insert(
                        t.name.clone(),
                        result(
                            &t.name,
                            PackageState::NotApplicable,
                            None,
                            &db,
                            t.version.clone(),
                            vec![format!("already at {installed} (target {v})")],
                        ),
                    );
                    continue;
                }
            }
            remaining.push(t);
        }
        if remaining.is_empty() {
            return finish(log, None, results, None);
        }

        // 2. Package-manager health, before acting: wait (bounded) for another apt or dpkg to
        //    finish, then refuse to build on a database an earlier run left half-done. Either
        //    would otherwise surface as confusing errors of the commands below.
        if let Err(evidence) = self.wait_for_locks(deadline, &mut log) {
            fail_all(
                &mut results,
                &remaining,
                &before,
                FailureClass::LockHeld,
                &evidence,
            );
            return finish(log, None, results, None);
        }
        if let Some(evidence) = self.interrupted_evidence(&before) {
            for line in &evidence {
                log.note(line);
            }
            warn!(
                class = "interrupted_state",
                "dpkg was interrupted; nothing installed"
            );
            fail_all(
                &mut results,
                &remaining,
                &before,
                FailureClass::InterruptedState,
                &evidence,
            );
            return finish(log, None, results, None);
        }

        // 3. Fresh package lists; a repository error fails the update instead of being a warning.
        let update = self.run(
            &["apt-get", "update", "-o", "APT::Update::Error-Mode=any"],
            deadline,
            &mut log,
        );
        if !update.success() {
            let (class, evidence) = if update.timed_out {
                (
                    FailureClass::Timeout,
                    vec!["apt-get update ran out of the time budget".to_owned()],
                )
            } else {
                let findings = classify_apt(&update.stdout, &update.stderr, update.exit_code);
                match primary(&findings) {
                    Some(f) => (f.class, f.evidence.clone()),
                    None => (
                        FailureClass::Unknown,
                        vec![format!("apt-get update exited {:?}", update.exit_code)],
                    ),
                }
            };
            let mut ev = vec!["apt-get update failed; nothing was installed".to_owned()];
            ev.extend(evidence);
            fail_all(&mut results, &remaining, &before, class, &ev);
            return finish(log, None, results, None);
        }

        // 4. The version to install: the job's, or the candidate.
        let without_version: Vec<&str> = remaining
            .iter()
            .filter(|t| t.version.is_none())
            .map(|t| t.name.as_str())
            .collect();
        let mut candidates: BTreeMap<String, Option<String>> = BTreeMap::new();
        if !without_version.is_empty() {
            let mut argv = vec!["apt-cache", "policy"];
            argv.extend(without_version.iter().copied());
            let policy = self.run(&argv, deadline, &mut log);
            for p in parse_apt_cache_policy(&policy.stdout) {
                candidates.insert(p.name, p.candidate);
            }
        }
        let mut plan: Vec<(&PackageTarget, String)> = Vec::new();
        for t in remaining {
            let db = db_of(&before, &t.name);
            let intended = match &t.version {
                Some(v) => v.clone(),
                None => match candidates.get(&t.name).cloned().flatten() {
                    Some(c) => c,
                    None => {
                        results.insert(
                            t.name.clone(),
                            result(
                                &t.name,
                                PackageState::Failed,
                                Some(FailureClass::PackageNotFound),
                                &db,
                                None,
                                vec![format!(
                                    "apt-cache policy shows no installation candidate for {}",
                                    t.name
                                )],
                            ),
                        );
                        continue;
                    }
                },
            };
            let installed = db.version.clone().unwrap_or_default();
            let clean = db
                .status
                .as_deref()
                .is_some_and(patchwarden_core::apt::is_clean_status);
            if t.version.is_none()
                && clean
                && matches!(
                    compare_deb(&installed, &intended),
                    Some(Ordering::Equal | Ordering::Greater)
                )
            {
                results.insert(
                    t.name.clone(),
                    result(
                        &t.name,
                        PackageState::NotApplicable,
                        None,
                        &db,
                        Some(intended.clone()),
                        vec![format!(
                            "already at the newest available version {installed}"
                        )],
                    ),
                );
                continue;
            }
            plan.push((t, intended));
        }
        if plan.is_empty() {
            return finish(log, None, results, None);
        }

        // 5. One transaction for every remaining target. apt itself waits for the frontend
        //    lock should another apt have taken it since the check above.
        let specs: Vec<String> = plan
            .iter()
            .map(|(t, v)| format!("{}={v}", t.name))
            .collect();
        let lock_timeout = format!(
            "DPkg::Lock::Timeout={}",
            self.lock_wait
                .min(deadline.saturating_duration_since(Instant::now()))
                .as_secs()
        );
        let overridden: Vec<&str> = overridden
            .into_iter()
            .filter(|n| plan.iter().any(|(t, _)| t.name == *n))
            .collect();
        let mut argv = vec!["apt-get", "install", "-y", "--no-remove", "--only-upgrade"];
        if !overridden.is_empty() {
            argv.push("--allow-change-held-packages");
            log.note(&format!(
                "holds overridden by the deployment (respect_holds: false): {}",
                overridden.join(" ")
            ));
        }
        argv.extend(DPKG_OPTIONS);
        argv.extend(["-o", lock_timeout.as_str()]);
        argv.extend(specs.iter().map(String::as_str));
        info!(packages = %specs.join(" "), "installing");
        let install = self.run(&argv, deadline, &mut log);
        // An overridden hold stays a hold: set it again should the install have cleared it.
        let kept_holds = (!overridden.is_empty()).then(|| self.keep_holds(&overridden, &mut log));

        // 6. The package database decides.
        let inspect = Instant::now() + INSPECT_BUDGET;
        let plan_names: Vec<&str> = plan.iter().map(|(t, _)| t.name.as_str()).collect();
        let after = self.dpkg_query(&plan_names, inspect, &mut log);
        let reboot = reboot_required_packages(&self.paths);
        let run = RunEvidence {
            exit_code: install.exit_code,
            stdout: &install.stdout,
            stderr: &install.stderr,
            timed_out: install.timed_out,
        };
        let findings = classify_apt(&install.stdout, &install.stderr, install.exit_code);
        let error = after.as_ref().err().cloned();
        // A kill in the middle of dpkg leaves its journal behind: say so, since the next run
        // will find the database interrupted.
        let after_kill = (install.timed_out && journal_entries(&self.paths) > 0).then(|| {
            let line = format!(
                "after the kill dpkg's journal ({DPKG_JOURNAL}) is not empty: the package database is left interrupted and needs `dpkg --configure -a`"
            );
            log.note(&line);
            line
        });
        for (t, intended) in &plan {
            let b = db_of(&before, &t.name);
            let (state, class, evidence, installed_version) = match &after {
                Ok(after) => {
                    let a = db_of(after, &t.name);
                    let mut d =
                        decide_with_findings(&t.name, intended, &b, &a, &run, &findings, &reboot);
                    if let Some(line) = &after_kill {
                        if d.class == Some(FailureClass::Timeout) {
                            d.evidence.push(line.clone());
                            d.evidence.truncate(MAX_EVIDENCE_LINES);
                        }
                    }
                    (d.state, d.class, d.evidence, a.version)
                }
                Err(e) => (
                    PackageState::Failed,
                    Some(FailureClass::AgentError),
                    vec![e.clone()],
                    None,
                ),
            };
            let mut evidence = evidence;
            if let (true, Some(kept)) = (overridden.contains(&t.name.as_str()), &kept_holds) {
                evidence.insert(
                    0,
                    format!(
                        "held by apt-mark hold; installed anyway because the deployment overrides holds (respect_holds: false); {kept}"
                    ),
                );
                evidence.truncate(MAX_EVIDENCE_LINES);
            }
            results.insert(
                t.name.clone(),
                PackageResult {
                    package: t.name.clone(),
                    state,
                    class,
                    from_version: b.version.clone(),
                    to_version: Some(intended.clone()),
                    installed_version,
                    evidence,
                },
            );
        }
        finish(log, install.exit_code, results, error)
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::Mutex;

    /// Answers commands from a script: the first unused entry whose words start the command.
    struct Scripted {
        script: Mutex<Vec<(&'static str, CommandOutput)>>,
        seen: Mutex<Vec<String>>,
    }

    impl Runner for Scripted {
        fn run(&self, argv: &[&str], _deadline: Option<Instant>) -> io::Result<CommandOutput> {
            let command = argv.join(" ");
            self.seen.lock().expect("lock").push(command.clone());
            let mut script = self.script.lock().expect("lock");
            let i = script
                .iter()
                .position(|(prefix, _)| command.starts_with(prefix))
                .unwrap_or_else(|| panic!("unexpected command {command:?}"));
            let (_, mut out) = script.remove(i);
            out.command = command;
            Ok(out)
        }
    }

    fn out(exit: i32, stdout: &str, stderr: &str) -> CommandOutput {
        CommandOutput {
            exit_code: Some(exit),
            stdout: stdout.into(),
            stderr: stderr.into(),
            ..Default::default()
        }
    }

    /// A captured lab fixture of patchwarden-core (see its tests/fixtures/apt/README.md).
    fn captured(name: &str) -> CommandOutput {
        let path = format!(
            "{}/../core/tests/fixtures/apt/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let exit = text
            .lines()
            .find_map(|l| l.strip_prefix("# exit: "))
            .and_then(|c| c.trim().parse().ok());
        let o = text.find("--- stdout\n").expect("stdout") + 11;
        let e = text.find("--- stderr\n").expect("stderr");
        CommandOutput {
            exit_code: exit,
            stdout: text[o..e].into(),
            stderr: text[e + 11..].into(),
            ..Default::default()
        }
    }

    fn row(name: &str, version: &str, status: &str) -> String {
        format!("{name}\t{name}\t{version}\t{version}\tall\t{status} \n")
    }

    fn apt(script: Vec<(&'static str, CommandOutput)>) -> (Apt<Scripted>, tempfile::TempDir) {
        let root = tempfile::tempdir().expect("tempdir");
        let runner = Scripted {
            script: Mutex::new(script),
            seen: Mutex::new(vec![]),
        };
        (
            Apt::new(
                runner,
                HostPaths {
                    root: root.path().to_owned(),
                },
            ),
            root,
        )
    }

    fn target(name: &str, version: Option<&str>) -> PackageTarget {
        PackageTarget {
            name: name.into(),
            version: version.map(Into::into),
        }
    }

    #[test]
    fn postinst_failure_of_one_package_does_not_fail_the_other() {
        let before = [
            row("pw-big", "1.0", "ii"),
            row("pw-postfail", "1.0", "ii"),
            row("pw-held", "1.0", "hi"),
        ]
        .concat();
        let after = [row("pw-big", "2.0", "ii"), row("pw-postfail", "2.0", "iF")].concat();
        let (apt, _root) = apt(vec![
            (
                "dpkg-query -W",
                out(
                    1,
                    &before,
                    "dpkg-query: no packages found matching pw-gone\n",
                ),
            ),
            ("apt-mark showhold", out(0, "pw-held\n", "")),
            (
                "apt-get update -o APT::Update::Error-Mode=any",
                out(0, "Reading package lists...\n", ""),
            ),
            (
                "apt-cache policy pw-big",
                out(0, "pw-big:\n  Installed: 1.0\n  Candidate: 2.0\n", ""),
            ),
            (
                "apt-get install -y --no-remove --only-upgrade",
                captured("postinst-fail.txt"),
            ),
            ("dpkg-query -W", out(0, &after, "")),
        ]);
        let targets = [
            target("pw-big", None),
            target("pw-postfail", Some("2.0")),
            target("pw-gone", Some("1.0")),
            target("pw-held", Some("2.0")),
        ];
        let r = apt.install(
            &targets,
            Duration::from_secs(600),
            InstallOptions::default(),
        );
        let states: Vec<_> = r
            .packages
            .iter()
            .map(|p| (p.package.as_str(), p.state, p.class))
            .collect();
        assert_eq!(
            states,
            [
                ("pw-big", PackageState::Verified, None),
                (
                    "pw-postfail",
                    PackageState::Failed,
                    Some(FailureClass::InstallScriptFailed)
                ),
                ("pw-gone", PackageState::NotApplicable, None),
                (
                    "pw-held",
                    PackageState::Skipped,
                    Some(FailureClass::HeldBack)
                ),
            ]
        );
        assert_eq!(r.exit_code, Some(100));
        assert_eq!(r.packages[0].installed_version.as_deref(), Some("2.0"));
        assert_eq!(r.packages[0].from_version.as_deref(), Some("1.0"));
        assert!(r.packages[1]
            .evidence
            .iter()
            .any(|e| e.contains("post-installation script")));
        let install = r
            .commands
            .iter()
            .find(|c| c.starts_with("apt-get install"))
            .expect("install");
        assert!(install.ends_with("pw-big=2.0 pw-postfail=2.0"), "{install}");
        assert!(install.contains("--force-confold"));
        assert!(r.output.contains("$ apt-get update"));
        assert!(r.error.is_none());
    }

    #[test]
    fn a_failed_update_fails_every_remaining_target_without_installing() {
        let (apt, _root) = apt(vec![
            ("dpkg-query -W", out(0, &row("pw-ok", "1.0", "ii"), "")),
            ("apt-mark showhold", out(0, "", "")),
            ("apt-get update", captured("update-nopubkey.txt")),
        ]);
        let r = apt.install(
            &[target("pw-ok", Some("2.0"))],
            Duration::from_secs(600),
            InstallOptions::default(),
        );
        assert_eq!(r.packages[0].state, PackageState::Failed);
        assert_eq!(r.packages[0].class, Some(FailureClass::RepoInvalid));
        assert!(r.packages[0]
            .evidence
            .iter()
            .any(|e| e.contains("NO_PUBKEY")));
        assert!(!r.commands.iter().any(|c| c.starts_with("apt-get install")));
    }

    #[test]
    fn an_interrupted_dpkg_fails_the_job_before_anything_runs() {
        let dpkg = [row("pw-ok", "1.0", "ii"), row("pw-slow", "2.0", "iF")].concat();
        let (apt, root) = apt(vec![
            ("dpkg-query -W", out(0, &dpkg, "")),
            ("apt-mark showhold", out(0, "", "")),
        ]);
        std::fs::create_dir_all(root.path().join("var/lib/dpkg/updates")).expect("mkdir");
        std::fs::write(root.path().join("var/lib/dpkg/updates/0000"), "").expect("write");
        let r = apt.install(
            &[target("pw-ok", Some("2.0"))],
            Duration::from_secs(600),
            InstallOptions::default(),
        );
        let p = &r.packages[0];
        assert_eq!(
            (p.state, p.class),
            (PackageState::Failed, Some(FailureClass::InterruptedState))
        );
        assert!(
            p.evidence[0].contains("dpkg was interrupted"),
            "{:?}",
            p.evidence
        );
        assert!(p.evidence.iter().any(|e| e == "dpkg: pw-slow 2.0 iF"));
        assert_eq!(p.installed_version.as_deref(), Some("1.0"));
        // Nothing but the two read-only queries ran.
        assert_eq!(r.commands.len(), 2, "{:?}", r.commands);
        assert!(r.output.contains("[agent] dpkg was interrupted"));
    }

    #[test]
    fn a_half_configured_package_alone_does_not_block_other_packages() {
        let dpkg = [row("pw-ok", "1.0", "ii"), row("pw-postfail", "2.0", "iF")].concat();
        let (apt, _root) = apt(vec![
            ("dpkg-query -W", out(0, &dpkg, "")),
            ("apt-mark showhold", out(0, "", "")),
            ("apt-get update", out(0, "Reading package lists...\n", "")),
            (
                "apt-get install -y --no-remove --only-upgrade",
                captured("after-postfail-other-install.txt"),
            ),
            ("dpkg-query -W", out(0, &row("pw-ok", "2.0", "ii"), "")),
        ]);
        let r = apt.install(
            &[target("pw-ok", Some("2.0"))],
            Duration::from_secs(600),
            InstallOptions::default(),
        );
        assert_eq!(r.packages[0].state, PackageState::Verified, "{r:#?}");
        let install = r
            .commands
            .iter()
            .find(|c| c.starts_with("apt-get install"))
            .expect("install");
        assert!(install.contains("-o DPkg::Lock::Timeout=120"), "{install}");
    }

    #[test]
    fn already_up_to_date_targets_run_nothing() {
        let (apt, _root) = apt(vec![
            ("dpkg-query -W", out(0, &row("pw-ok", "2.0", "ii"), "")),
            ("apt-mark showhold", out(0, "", "")),
        ]);
        let r = apt.install(
            &[target("pw-ok", Some("1.5"))],
            Duration::from_secs(600),
            InstallOptions::default(),
        );
        assert_eq!(r.packages[0].state, PackageState::NotApplicable);
        assert_eq!(r.commands.len(), 2);
    }

    #[test]
    fn inventory_from_captured_outputs() {
        let dpkg = [
            row("pw-ok", "1.0", "ii"),
            row("pw-slow", "2.0", "iF"),
            row("pw-held", "1.0", "hi"),
            row("old", "1.0", "rc"),
        ]
        .concat();
        let (apt, root) = apt(vec![
            ("dpkg-query -W", out(0, &dpkg, "")),
            (
                "apt-get -s",
                out(
                    0,
                    "Inst pw-ok [1.0] (2.0 Debian-Security:12/stable-security [all])\n",
                    "",
                ),
            ),
            ("apt-mark showhold", captured("showhold.txt")),
            ("apt-cache policy pw-held", captured("policy-held.txt")),
        ]);
        std::fs::create_dir_all(root.path().join("var/lib/dpkg/updates")).expect("mkdir");
        std::fs::write(root.path().join("var/lib/dpkg/updates/0001"), "").expect("write");
        let inv = apt.collect_inventory();
        assert_eq!(inv.package_manager, "apt");
        let names: Vec<_> = inv.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["pw-held", "pw-ok", "pw-slow"]);
        assert!(inv.health.interrupted);
        assert_eq!(inv.health.broken_packages, ["pw-slow"]);
        assert_eq!(inv.held, ["pw-held"]);
        let up: Vec<_> = inv
            .upgradable
            .iter()
            .map(|u| {
                (
                    u.name.as_str(),
                    u.candidate_version.as_str(),
                    u.security,
                    u.held,
                )
            })
            .collect();
        assert_eq!(
            up,
            [
                ("pw-held", "2.0", false, true),
                ("pw-ok", "2.0", true, false)
            ]
        );
        // A second collection reuses the simulation: the script has no second `apt-get -s`.
        let again = apt.simulate(
            Instant::now() + Duration::from_secs(5),
            &mut RunLog::default(),
        );
        assert!(again.stdout.starts_with("Inst pw-ok"));
    }
}
