//! apt/dpkg driven through their command-line tools (never libapt): `dpkg-query`, `apt-get`,
//! `apt-cache`, `apt-mark`. Parsing and decisions live in `patchwarden_core`.
//!
//! Here: the backend, its queries, the inventory and the steps an install and a pre-flight
//! check share (read the package database, settle targets that need nothing, refuse an
//! interrupted dpkg, refresh the lists). The install's steps are in [`install`], the
//! pre-flight check's in [`preflight`]; what apt shares with dnf is in `pkg::common`.

use super::common::{
    fcntl_lock_holder, last_lines, refresh_failure, refuse_interrupted, run_logged, BackendError,
    JobRun, RunLog,
};
use super::{InstallOptions, PackageManager};
use crate::exec::{CommandOutput, Runner};
use crate::inventory::{canonicalize, collect_host_facts, HostPaths};
use patchwarden_core::apt::{
    is_broken_status, is_clean_status, is_present_status, parse_apt_cache_policy,
    parse_apt_simulation, parse_dpkg_query, parse_showhold, DpkgEntry, DPKG_QUERY_FORMAT,
};
use patchwarden_core::classify::{classify_apt, primary};
use patchwarden_core::outcome::{PkgDb, MAX_EVIDENCE_LINES};
use patchwarden_core::version::compare_deb;
use patchwarden_core::{FailureClass, PackageState};
use patchwarden_wire::agent::{
    InstalledPackage, Inventory, JobResult, PackageManagerHealth, PackageTarget, UpgradablePackage,
};
use std::cmp::Ordering;
use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;
use std::time::{Duration, Instant};
use tracing::warn;

mod install;
mod preflight;

/// Budget of each inventory command.
const INVENTORY_COMMAND_BUDGET: Duration = Duration::from_secs(120);

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

/// The targets a run must still act on, once those that need nothing are settled.
struct Todo<'t> {
    remaining: Vec<&'t PackageTarget>,
    /// Held targets the deployment overrides (`respect_holds: false`).
    overridden: Vec<&'t str>,
}

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

    /// The first held package-manager lock, described (`None`: all free). Never takes a
    /// lock, so a probe never makes an administrator's apt fail.
    fn held_lock(&self) -> Option<String> {
        LOCK_FILES
            .iter()
            .find_map(|path| fcntl_lock_holder(&self.paths.at(path), path, true))
    }

    /// Waits (bounded by `wait` and the job's deadline) until no apt or dpkg lock is held;
    /// a lock still held stops the run with `consequence` as its last words.
    fn wait_for_locks(
        &self,
        job: &mut JobRun,
        wait: Duration,
        consequence: &str,
    ) -> Result<(), BackendError> {
        super::common::wait_for_locks(
            || self.held_lock(),
            wait,
            job.deadline,
            &mut job.log,
            consequence,
        )
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
        run_logged(&self.runner, argv, deadline, log)
    }

    /// dpkg's view of `names` (all packages when empty). dpkg-query exits 1 when some name is
    /// unknown but still prints the others, so stdout is parsed whatever the exit code.
    fn dpkg_query(
        &self,
        names: &[&str],
        deadline: Instant,
        log: &mut RunLog,
    ) -> Result<Vec<DpkgEntry>, BackendError> {
        let format = format!("-f={DPKG_QUERY_FORMAT}");
        let mut argv = vec!["dpkg-query", "-W", format.as_str()];
        argv.extend(names.iter().copied());
        let out = self.run(&argv, deadline, log);
        if out.exit_code.is_none() {
            return Err(BackendError::CommandKilled {
                command: "dpkg-query",
                detail: out.stderr.trim().to_owned(),
            });
        }
        parse_dpkg_query(&out.stdout).map_err(|source| BackendError::Unparsable {
            command: "dpkg-query",
            source,
        })
    }

    /// Makes sure `names` are still held after an install that overrode their holds; says
    /// what it found, for the evidence.
    fn keep_holds(&self, names: &[&str], log: &mut RunLog) -> String {
        let deadline = Instant::now() + super::common::INSPECT_BUDGET;
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

    fn held(&self, deadline: Instant, log: &mut RunLog) -> Result<Vec<String>, BackendError> {
        let out = self.run(&["apt-mark", "showhold"], deadline, log);
        if !out.success() {
            return Err(BackendError::CommandFailed {
                command: "apt-mark showhold".into(),
                exit_code: out.exit_code,
                detail: out.stderr.trim().to_owned(),
            });
        }
        Ok(parse_showhold(&out.stdout))
    }
}

/// The steps an install and a pre-flight check share.
impl<R: Runner> Apt<R> {
    /// Every package dpkg knows (the health check needs them all); each target's installed
    /// version is recorded in the job.
    fn read_package_db(&self, job: &mut JobRun) -> Result<Vec<DpkgEntry>, BackendError> {
        let before = self.dpkg_query(&[], job.deadline, &mut job.log)?;
        job.record_installed(|name| db_of(&before, name).version);
        Ok(before)
    }

    /// Settles the targets that need no install: not installed (`not_applicable`), held
    /// (`skipped`/`held_back`, `held_note` says so; unless the deployment overrides holds),
    /// already at the target version (`not_applicable`). Returns the others.
    fn settle_untouched_targets<'t>(
        &self,
        job: &mut JobRun<'t>,
        before: &[DpkgEntry],
        options: InstallOptions,
        held_note: &str,
    ) -> Todo<'t> {
        let held = self.held(job.deadline, &mut job.log).unwrap_or_else(|e| {
            warn!(error = %e, "could not list held packages");
            Vec::new()
        });
        let mut todo = Todo {
            remaining: Vec::new(),
            overridden: Vec::new(),
        };
        for t in job.targets() {
            let db = db_of(before, &t.name);
            let Some(installed) = db.version.clone() else {
                job.settle(
                    t,
                    PackageState::NotApplicable,
                    None,
                    t.version.clone(),
                    vec!["not installed".into()],
                );
                continue;
            };
            if held.contains(&t.name) {
                if options.respect_holds {
                    job.settle(
                        t,
                        PackageState::Skipped,
                        Some(FailureClass::HeldBack),
                        t.version.clone(),
                        vec![held_note.to_owned()],
                    );
                    continue;
                }
                todo.overridden.push(t.name.as_str());
            }
            if let Some(v) = &t.version {
                let reached = matches!(
                    compare_deb(&installed, v),
                    Some(Ordering::Equal | Ordering::Greater)
                );
                if reached && db.status.as_deref().is_some_and(is_clean_status) {
                    job.settle_already_at(t, &installed, v);
                    continue;
                }
            }
            todo.remaining.push(t);
        }
        todo
    }

    /// Refuses to build on a database an earlier run left half-done (`interrupted_state`).
    fn refuse_interrupted_state(
        &self,
        job: &mut JobRun,
        before: &[DpkgEntry],
    ) -> Result<(), BackendError> {
        refuse_interrupted(self.interrupted_evidence(before), &mut job.log)
    }

    /// Fresh package lists (`extra`: options of the pre-flight's scratch lists). A repository
    /// error fails the update instead of being a warning; `failed` heads its evidence.
    fn refresh_lists(
        &self,
        job: &mut JobRun,
        extra: &[String],
        failed: &str,
    ) -> Result<(), BackendError> {
        let mut argv = vec!["apt-get", "update", "-o", "APT::Update::Error-Mode=any"];
        argv.extend(extra.iter().map(String::as_str));
        let update = self.run(&argv, job.deadline, &mut job.log);
        if update.success() {
            return Ok(());
        }
        let findings = classify_apt(&update.stdout, &update.stderr, update.exit_code);
        let (class, found) =
            refresh_failure(&update, "apt-get update", primary(&findings).cloned());
        let mut evidence = vec![failed.to_owned()];
        evidence.extend(found);
        Err(BackendError::Repository {
            class,
            evidence,
            exit_code: None,
        })
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

/// Inventory steps.
impl<R: Runner> Apt<R> {
    /// The held packages, and their upgrades (from `apt-cache policy`) flagged `held`, so
    /// that a deployment can plan them (and skip them, or override the hold).
    fn add_holds(
        &self,
        inv: &mut Inventory,
        entries: &[DpkgEntry],
        deadline: Instant,
        log: &mut RunLog,
    ) {
        match self.held(deadline, log) {
            Ok(held) => {
                if !held.is_empty() {
                    let mut argv = vec!["apt-cache", "policy"];
                    argv.extend(held.iter().map(String::as_str));
                    let policy = self.run(&argv, deadline, log);
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
            Err(e) => inv.collection_errors.push(e.to_string()),
        }
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
                inv.collection_errors.push(e.to_string());
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

        self.add_holds(&mut inv, &entries, deadline, &mut log);
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
        self.install_targets(targets, budget, options)
    }
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
