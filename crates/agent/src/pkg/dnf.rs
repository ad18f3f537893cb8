//! dnf/rpm driven through their command-line tools: `rpm -qa`, `dnf repoquery`, `dnf updateinfo`,
//! `dnf versionlock`, `dnf upgrade`. Parsing and decisions live in `patchwarden_core` (`rpm`,
//! `classify_dnf`, `outcome_rpm`); the rpm database decides, never dnf's exit code.
//!
//! Choices, and why:
//! - Upgrades and candidates come from `dnf -q repoquery --upgrades --queryformat`, dnf's
//!   scriptable query interface, not `check-update`/`list --upgrades` (columns for humans).
//! - Installs are `dnf upgrade NAME-EVR` with `--best` (Debian's and some distributions' dnf.conf
//!   set `best=False`, which silently skips an upgrade with unmet dependencies),
//!   `skip_if_unavailable=False` (a repository down is an error, not a warning), and never
//!   `--allowerasing`: dnf then refuses any solution that would remove a package.
//! - Holds are `dnf versionlock` entries (when the plugin is installed) and `exclude=` /
//!   `excludepkgs=` patterns of /etc/dnf/dnf.conf and the enabled repositories. A held target
//!   is `skipped`/`held_back`; an install with `respect_holds: false` runs with
//!   `--disableplugin=versionlock` / `--disableexcludes=all` and locks the new version again.
//! - Health before acting: dnf 4 waits forever for another dnf's lock, so the agent waits
//!   (bounded by `--lock-wait`) for dnf's pid-file locks and rpm's transaction lock itself and
//!   fails `lock_held`; two versions of one package (an interrupted transaction) fail every
//!   target `interrupted_state`, as dpkg's journal does for apt.
//! - Reboot: `needs-restarting -r` where installed; else a package among [`REBOOT_PACKAGES`]
//!   installed after the current boot (RHEL's own list for `needs-restarting -r`).
//!
//! Here: the backend, its queries, the inventory and the steps an install and a pre-flight
//! check share. The install's steps are in [`install`], the pre-flight check's in
//! [`preflight`]; what dnf shares with apt is in `pkg::common`.

use super::common::{
    fcntl_lock_holder, last_lines, refresh_failure, refuse_interrupted, run_logged, BackendError,
    JobRun, RunLog, INSPECT_BUDGET,
};
use super::{InstallOptions, PackageManager};
use crate::exec::{CommandOutput, Runner};
use crate::inventory::{canonicalize, collect_host_facts, HostPaths};
use patchwarden_core::apt::parse_os_release;
use patchwarden_core::classify_dnf::classify_dnf;
use patchwarden_core::outcome::MAX_EVIDENCE_LINES;
use patchwarden_core::outcome_rpm::reaches;
use patchwarden_core::rpm::{
    compare_rpm, glob_match, parse_dnf_excludes, parse_repoquery, parse_rpm_query,
    parse_updateinfo_list, parse_versionlock_list, releasever, AvailableUpdate, ExcludePattern,
    RpmEntry, REPOQUERY_FORMAT, RPM_QUERY_FORMAT,
};
use patchwarden_core::{FailureClass, PackageState};
use patchwarden_wire::agent::{
    InstalledPackage, Inventory, JobResult, PackageManagerHealth, PackageTarget, UpgradablePackage,
};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};
use tracing::warn;

mod install;
mod preflight;

/// Budget of each inventory command.
const INVENTORY_COMMAND_BUDGET: Duration = Duration::from_secs(120);

/// Packages whose update needs a reboot to take effect (the list `needs-restarting -r` uses).
pub const REBOOT_PACKAGES: &[&str] = &[
    "kernel",
    "kernel-core",
    "kernel-rt",
    "kernel-rt-core",
    "glibc",
    "linux-firmware",
    "systemd",
    "udev",
    "openssl-libs",
    "gnutls",
    "dbus",
    "dbus-broker",
];

/// Names that legitimately have several versions installed at once (dnf's installonlypkgs).
fn is_install_only(name: &str) -> bool {
    name == "gpg-pubkey" || name.starts_with("kernel") || name.starts_with("installonlypkg")
}

pub struct Dnf<R: Runner> {
    runner: R,
    paths: HostPaths,
    /// `--releasever=` from os-release VERSION_ID's major (`9.4` → `9`), when known.
    releasever: Option<String>,
    /// How long a job waits for another dnf or rpm to release its lock.
    lock_wait: Duration,
}

/// dnf 4's locks: files naming the pid of the dnf that holds them (held while that process
/// lives; dnf waits for it forever).
const DNF_PID_LOCKS: [&str; 3] = [
    "/var/lib/dnf/rpmdb_lock.pid",
    "/var/cache/dnf/metadata_lock.pid",
    "/var/cache/dnf/download_lock.pid",
];
/// rpm's transaction lock (fcntl write lock) in the classic and the newer database place;
/// the one in rpm's configured `%_dbpath` is probed too.
const RPM_LOCKS: [&str; 2] = ["/var/lib/rpm/.rpm.lock", "/usr/lib/sysimage/rpm/.rpm.lock"];

/// Why dnf would leave a package alone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hold {
    Versionlock,
    Exclude {
        file: String,
        section: String,
        pattern: String,
    },
}

impl Hold {
    fn describe(&self) -> String {
        match self {
            Hold::Versionlock => "locked by dnf versionlock".into(),
            Hold::Exclude {
                file,
                section,
                pattern,
            } => format!("excluded by `{pattern}` in [{section}] of {file}"),
        }
    }
}

/// The device's holds: versionlock entries and exclude patterns (with their file).
#[derive(Debug, Default)]
struct Holds {
    locked: Vec<String>,
    excludes: Vec<(String, ExcludePattern)>,
}

impl Holds {
    fn of(&self, name: &str) -> Option<Hold> {
        if self.locked.iter().any(|l| l == name) {
            return Some(Hold::Versionlock);
        }
        self.excludes
            .iter()
            .find(|(_, e)| glob_match(&e.pattern, name))
            .map(|(file, e)| Hold::Exclude {
                file: file.clone(),
                section: e.section.clone(),
                pattern: e.pattern.clone(),
            })
    }
}

/// dnf options that lift the holds of `overridden` targets for one command.
fn override_flags(overridden: &[(&PackageTarget, Hold)]) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if overridden.iter().any(|(_, h)| *h == Hold::Versionlock) {
        flags.push("--disableplugin=versionlock");
    }
    if overridden
        .iter()
        .any(|(_, h)| matches!(h, Hold::Exclude { .. }))
    {
        flags.push("--disableexcludes=all");
    }
    flags
}

/// Packages installed at several versions at once (install-only packages left out): a
/// transaction was interrupted between installing the new one and erasing the old one.
fn duplicates(entries: &[RpmEntry]) -> Vec<(String, String, Vec<String>)> {
    let mut versions: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for e in entries.iter().filter(|e| !is_install_only(&e.name)) {
        versions
            .entry((e.name.as_str(), e.arch.as_str()))
            .or_default()
            .push(e.evr.as_str());
    }
    versions
        .into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|((n, a), v)| {
            (
                n.to_owned(),
                a.to_owned(),
                v.into_iter().map(str::to_owned).collect(),
            )
        })
        .collect()
}

/// Evidence that rpm's database holds an interrupted transaction; `None` when consistent.
fn interrupted_evidence(entries: &[RpmEntry]) -> Option<Vec<String>> {
    let dups = duplicates(entries);
    if dups.is_empty() {
        return None;
    }
    let mut evidence: Vec<String> = dups
        .iter()
        .map(|(name, arch, evrs)| {
            format!(
                "rpm: {name}.{arch} installed at {} versions ({}): a transaction was interrupted",
                evrs.len(),
                evrs.join(", ")
            )
        })
        .collect();
    evidence.truncate(MAX_EVIDENCE_LINES - 1);
    evidence.push(
        "`dnf remove --duplicates` (or `dnf distro-sync`) must run before anything is installed"
            .into(),
    );
    Some(evidence)
}

impl<R: Runner> Dnf<R> {
    pub fn new(runner: R, paths: HostPaths) -> Self {
        let os = fs::read_to_string(paths.at("/etc/os-release"))
            .map(|t| parse_os_release(&t))
            .unwrap_or_default();
        Dnf {
            runner,
            releasever: releasever(&os.version_id),
            paths,
            lock_wait: crate::pkg::DEFAULT_LOCK_WAIT,
        }
    }

    /// How long a job waits for the dnf and rpm locks (`run --lock-wait`).
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The first held dnf or rpm lock, described (`None`: all free). Never takes a lock.
    fn held_lock(&self, rpm_locks: &[String]) -> Option<String> {
        for path in DNF_PID_LOCKS {
            let Ok(text) = fs::read_to_string(self.paths.at(path)) else {
                continue;
            };
            let Ok(pid) = text.trim().parse::<u32>() else {
                continue;
            };
            if pid == std::process::id() || !self.paths.at(&format!("/proc/{pid}/stat")).exists() {
                continue;
            }
            let comm = fs::read_to_string(self.paths.at(&format!("/proc/{pid}/comm")))
                .map(|c| c.trim().to_owned())
                .unwrap_or_else(|_| "?".into());
            return Some(format!("{path} is held by process {pid} ({comm})"));
        }
        rpm_locks
            .iter()
            .find_map(|path| fcntl_lock_holder(&self.paths.at(path), path, false))
    }

    /// Waits (bounded by `wait` and the job's deadline) until no dnf or rpm lock is held
    /// (rpm's lock also where rpm's `%_dbpath` puts it); a lock still held stops the run with
    /// `consequence` as its last words.
    fn wait_for_locks(
        &self,
        job: &mut JobRun,
        wait: Duration,
        consequence: &str,
    ) -> Result<(), BackendError> {
        let mut rpm_locks: Vec<String> = RPM_LOCKS.iter().map(|s| (*s).to_owned()).collect();
        let out = self.run(&["rpm", "--eval", "%{_dbpath}"], job.deadline, &mut job.log);
        let dbpath = out.stdout.trim();
        if out.success() && dbpath.starts_with('/') {
            let lock = format!("{dbpath}/.rpm.lock");
            if !rpm_locks.contains(&lock) {
                rpm_locks.insert(0, lock);
            }
        }
        super::common::wait_for_locks(
            || self.held_lock(&rpm_locks),
            wait,
            job.deadline,
            &mut job.log,
            consequence,
        )
    }

    /// Versionlock entries and exclude patterns (dnf.conf, then the repository files).
    fn holds(&self, deadline: Instant, log: &mut RunLog) -> Holds {
        let locked = self.held(deadline, log).unwrap_or_else(|e| {
            warn!(error = %e, "could not list version locks");
            Vec::new()
        });
        Holds {
            locked,
            ..self.holds_from_files()
        }
    }

    /// The exclude patterns of dnf.conf and the repository files.
    fn holds_from_files(&self) -> Holds {
        let mut files = vec!["/etc/dnf/dnf.conf".to_owned()];
        if let Ok(dir) = fs::read_dir(self.paths.at("/etc/yum.repos.d")) {
            let mut repos: Vec<String> = dir
                .flatten()
                .filter_map(|e| {
                    let n = e.file_name().into_string().ok()?;
                    n.ends_with(".repo")
                        .then(|| format!("/etc/yum.repos.d/{n}"))
                })
                .collect();
            repos.sort();
            files.extend(repos);
        }
        let mut excludes = Vec::new();
        for f in files {
            if let Ok(text) = fs::read_to_string(self.paths.at(&f)) {
                excludes.extend(
                    parse_dnf_excludes(&text)
                        .into_iter()
                        .map(|e| (f.clone(), e)),
                );
            }
        }
        Holds {
            locked: Vec::new(),
            excludes,
        }
    }

    /// After an install that overrode the versionlock of `names`: lock the version now
    /// installed (the hold stays a hold). Returns a line per name for the evidence.
    fn relock(&self, names: &[&str], log: &mut RunLog) -> BTreeMap<String, String> {
        let deadline = Instant::now() + INSPECT_BUDGET;
        let mut out = BTreeMap::new();
        if names.is_empty() {
            return out;
        }
        let mut del = vec!["versionlock", "delete"];
        del.extend(names.iter().copied());
        let d = self.dnf(true, &del, deadline, log);
        let mut add = vec!["versionlock", "add"];
        add.extend(names.iter().copied());
        let a = self.dnf(true, &add, deadline, log);
        for n in names {
            let line = if d.success() && a.success() {
                "the versionlock now holds the version installed".to_owned()
            } else {
                warn!(package = %n, "could not lock the new version again");
                format!(
                    "locking the new version again failed (versionlock delete exited {:?}, add exited {:?}): {}",
                    d.exit_code,
                    a.exit_code,
                    last_lines(&format!("{}{}", d.stderr, a.stderr), 2)
                )
            };
            out.insert((*n).to_owned(), line);
        }
        out
    }

    fn run(&self, argv: &[&str], deadline: Instant, log: &mut RunLog) -> CommandOutput {
        run_logged(&self.runner, argv, deadline, log)
    }

    /// `dnf [-q|-y] --releasever=N ARGS`.
    fn dnf(
        &self,
        quiet: bool,
        args: &[&str],
        deadline: Instant,
        log: &mut RunLog,
    ) -> CommandOutput {
        let rv = self
            .releasever
            .as_ref()
            .map(|r| format!("--releasever={r}"));
        let mut argv = vec!["dnf", if quiet { "-q" } else { "-y" }];
        argv.extend(rv.as_deref());
        argv.extend_from_slice(args);
        self.run(&argv, deadline, log)
    }

    /// Every installed package per rpm (the `gpg-pubkey` pseudo-packages left out).
    fn rpm_query(
        &self,
        deadline: Instant,
        log: &mut RunLog,
    ) -> Result<Vec<RpmEntry>, BackendError> {
        let out = self.run(
            &["rpm", "-qa", "--queryformat", RPM_QUERY_FORMAT],
            deadline,
            log,
        );
        if !out.success() {
            return Err(BackendError::CommandFailed {
                command: "rpm -qa".into(),
                exit_code: out.exit_code,
                detail: out.stderr.trim().to_owned(),
            });
        }
        let mut entries =
            parse_rpm_query(&out.stdout).map_err(|source| BackendError::Unparsable {
                command: "rpm -qa",
                source,
            })?;
        entries.retain(|e| e.name != "gpg-pubkey");
        Ok(entries)
    }

    /// Newer versions available, newest per (name, arch); `names` limits the query; `extra`
    /// options come first.
    fn upgrades(
        &self,
        names: &[&str],
        refresh: bool,
        extra: &[&str],
        deadline: Instant,
        log: &mut RunLog,
    ) -> Result<Vec<AvailableUpdate>, CommandOutput> {
        let mut args = extra.to_vec();
        if refresh {
            args.push("--refresh");
        }
        // Not quiet when metadata is downloaded: -q hides the line saying why a download
        // failed (a 404, a checksum mismatch), leaving only "all mirrors were tried".
        args.extend(["repoquery", "--upgrades", "--queryformat", REPOQUERY_FORMAT]);
        args.extend_from_slice(names);
        let out = self.dnf(!refresh, &args, deadline, log);
        if out.success() {
            Ok(parse_repoquery(&out.stdout))
        } else {
            Err(out)
        }
    }

    /// Locked names (`dnf versionlock list`); empty when the plugin is not installed.
    fn held(&self, deadline: Instant, log: &mut RunLog) -> Result<Vec<String>, BackendError> {
        let out = self.dnf(true, &["versionlock", "list"], deadline, log);
        if out.success() {
            return Ok(parse_versionlock_list(&out.stdout));
        }
        let text = format!("{}{}", out.stdout, out.stderr);
        if text.contains("No such command") || text.contains("no such command") {
            return Ok(Vec::new());
        }
        Err(BackendError::CommandFailed {
            command: "dnf versionlock list".into(),
            exit_code: out.exit_code,
            detail: last_lines(&out.stderr, 3),
        })
    }

    fn has_tool(&self, name: &str) -> bool {
        ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|d| self.paths.at(&format!("{d}/{name}")).is_file())
    }

    /// Packages that need a reboot: `needs-restarting -r` where installed (it names none, so
    /// the list is then [`REBOOT_PACKAGES`] installed after boot, possibly empty), else those
    /// packages installed after the boot time in /proc/stat.
    fn reboot_needed(
        &self,
        entries: &[RpmEntry],
        deadline: Instant,
        log: &mut RunLog,
    ) -> (bool, Vec<String>) {
        let btime = fs::read_to_string(self.paths.at("/proc/stat"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
        let newer: Vec<String> = match btime {
            Some(bt) => entries
                .iter()
                .filter(|e| REBOOT_PACKAGES.contains(&e.name.as_str()) && e.install_time > bt)
                .map(|e| e.name.clone())
                .collect(),
            None => Vec::new(),
        };
        if self.has_tool("needs-restarting") {
            let out = self.run(&["needs-restarting", "-r"], deadline, log);
            // Exit 1: a reboot is needed; 0: not needed.
            if out.exit_code == Some(1) {
                return (true, newer);
            }
            if out.exit_code == Some(0) {
                return (false, Vec::new());
            }
        }
        (!newer.is_empty(), newer)
    }
}

/// The newest installed version of `name` (several when an install was interrupted).
fn installed(entries: &[RpmEntry], name: &str) -> Option<String> {
    entries
        .iter()
        .filter(|e| e.name == name)
        .map(|e| e.evr.clone())
        .max_by(|a, b| compare_rpm(a, b).unwrap_or(Ordering::Equal))
}

/// The targets a run must still act on, once those that need nothing are settled.
struct Todo<'t> {
    remaining: Vec<&'t PackageTarget>,
    /// Held targets the deployment overrides (`respect_holds: false`), with their hold.
    overridden: Vec<(&'t PackageTarget, Hold)>,
}

/// A target with the version to install and dnf's spec for it (`NAME-EVR`).
struct Planned<'t> {
    target: &'t PackageTarget,
    intended: String,
    spec: String,
}

/// The steps an install and a pre-flight check share.
impl<R: Runner> Dnf<R> {
    /// Every package rpm knows; each target's installed version is recorded in the job.
    fn read_package_db(&self, job: &mut JobRun) -> Result<Vec<RpmEntry>, BackendError> {
        let before = self.rpm_query(job.deadline, &mut job.log)?;
        job.record_installed(|name| installed(&before, name));
        Ok(before)
    }

    /// Settles the targets that need no install: not installed (`not_applicable`), held
    /// (`skipped`/`held_back`, `held_note` words the hold; unless the deployment overrides
    /// holds), already at the target version (`not_applicable`). Returns the others.
    fn settle_untouched_targets<'t>(
        &self,
        job: &mut JobRun<'t>,
        before: &[RpmEntry],
        options: InstallOptions,
        held_note: impl Fn(&Hold) -> String,
    ) -> Todo<'t> {
        let holds = self.holds(job.deadline, &mut job.log);
        let mut todo = Todo {
            remaining: Vec::new(),
            overridden: Vec::new(),
        };
        for t in job.targets() {
            let Some(current) = installed(before, &t.name) else {
                job.settle(
                    t,
                    PackageState::NotApplicable,
                    None,
                    t.version.clone(),
                    vec!["not installed".into()],
                );
                continue;
            };
            if let Some(hold) = holds.of(&t.name) {
                if options.respect_holds {
                    job.settle(
                        t,
                        PackageState::Skipped,
                        Some(FailureClass::HeldBack),
                        t.version.clone(),
                        vec![held_note(&hold)],
                    );
                    continue;
                }
                todo.overridden.push((t, hold));
            }
            if let Some(v) = &t.version {
                if reaches(&current, v) {
                    job.settle_already_at(t, &current, v);
                    continue;
                }
            }
            todo.remaining.push(t);
        }
        todo
    }

    /// Refuses to build on a database an interrupted transaction left with two versions of
    /// a package (`interrupted_state`).
    fn refuse_interrupted_state(
        &self,
        job: &mut JobRun,
        before: &[RpmEntry],
    ) -> Result<(), BackendError> {
        refuse_interrupted(interrupted_evidence(before), &mut job.log)
    }

    /// Fresh metadata and the upgrade candidates of `names` (`flags` first: overridden holds,
    /// a throwaway cache). A repository error stops the run; `failed` heads its evidence.
    fn refresh_candidates(
        &self,
        job: &mut JobRun,
        names: &[&str],
        flags: &[&str],
        failed: &str,
    ) -> Result<Vec<AvailableUpdate>, BackendError> {
        self.upgrades(names, true, flags, job.deadline, &mut job.log)
            .map_err(|out| {
                let finding = classify_dnf(&out.stdout, &out.stderr, out.exit_code)
                    .into_iter()
                    .next();
                let (class, found) = refresh_failure(&out, "dnf repoquery", finding);
                let mut evidence = vec![failed.to_owned()];
                evidence.extend(found);
                BackendError::Repository {
                    class,
                    evidence,
                    exit_code: out.exit_code,
                }
            })
    }

    /// The version to install: the job's, or the newest candidate; a target without a
    /// newer candidate is `not_applicable`.
    fn resolve_plan<'t>(
        &self,
        job: &mut JobRun<'t>,
        remaining: &[&'t PackageTarget],
        candidates: &[AvailableUpdate],
    ) -> Vec<Planned<'t>> {
        let mut plan = Vec::new();
        for t in remaining {
            let intended = match &t.version {
                Some(v) => v.clone(),
                None => {
                    let newest = candidates
                        .iter()
                        .filter(|c| c.name == t.name)
                        .max_by(|a, b| compare_rpm(&a.evr, &b.evr).unwrap_or(Ordering::Equal));
                    match newest {
                        Some(c) => c.evr.clone(),
                        None => {
                            let current = job.installed_before(&t.name).unwrap_or_default();
                            job.settle(
                                t,
                                PackageState::NotApplicable,
                                None,
                                None,
                                vec![format!("already at the newest available version {current}")],
                            );
                            continue;
                        }
                    }
                }
            };
            plan.push(Planned {
                target: t,
                spec: format!("{}-{intended}", t.name),
                intended,
            });
        }
        plan
    }
}

fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let s = rustix::fs::statvfs(path).ok()?;
    let bytes = s.f_bavail.saturating_mul(s.f_frsize);
    Some(bytes - bytes % crate::inventory::DISK_GRANULARITY)
}

/// Inventory steps.
impl<R: Runner> Dnf<R> {
    /// The held packages (versionlock entries, and installed packages an exclude pattern
    /// covers) and their upgrades, flagged `held`: dnf hides them, but a deployment must be
    /// able to plan them (and skip them, or override the hold), as apt's inventory allows.
    fn add_holds(
        &self,
        inv: &mut Inventory,
        entries: &[RpmEntry],
        deadline: Instant,
        log: &mut RunLog,
    ) {
        match self.held(deadline, log) {
            Ok(held) => inv.held = held,
            Err(e) => inv.collection_errors.push(e.to_string()),
        }
        // Installed packages an exclude pattern keeps dnf from upgrading are held too.
        let holds = self.holds_from_files();
        for p in &inv.packages {
            if holds.of(&p.name).is_some() && !inv.held.contains(&p.name) {
                inv.held.push(p.name.clone());
            }
        }
        // dnf hides the upgrades of held packages; list them as held, as apt's inventory does,
        // so that a deployment can plan them (and skip them, or override the hold).
        if !inv.held.is_empty() {
            let names: Vec<&str> = inv.held.iter().map(String::as_str).collect();
            let flags = ["--disableplugin=versionlock", "--disableexcludes=all"];
            match self.upgrades(&names, false, &flags, deadline, log) {
                Ok(ups) => {
                    for u in ups {
                        // repoquery honours excludes but not versionlock: flag what it listed.
                        if let Some(x) = inv.upgradable.iter_mut().find(|x| x.name == u.name) {
                            x.held = true;
                            continue;
                        }
                        let Some(installed) = installed(entries, &u.name) else {
                            continue;
                        };
                        inv.upgradable.push(UpgradablePackage {
                            name: u.name,
                            installed_version: installed,
                            candidate_version: u.evr,
                            arch: u.arch,
                            security: false,
                            origins: vec![u.repo],
                            held: true,
                        });
                    }
                }
                Err(out) => inv.collection_errors.push(format!(
                    "dnf repoquery --upgrades of held packages exited {:?}: {}",
                    out.exit_code,
                    last_lines(&out.stderr, 3)
                )),
            }
        }
    }

    /// Security flags (and advisory ids as origins) from updateinfo; a repository without
    /// it lists nothing.
    fn flag_security_updates(&self, inv: &mut Inventory, deadline: Instant, log: &mut RunLog) {
        if !inv.upgradable.is_empty() {
            let out = self.dnf(true, &["updateinfo", "list", "--updates"], deadline, log);
            if out.success() {
                for adv in parse_updateinfo_list(&out.stdout)
                    .iter()
                    .filter(|a| a.is_security())
                {
                    for u in inv.upgradable.iter_mut().filter(|u| {
                        u.name == adv.package.name
                            && reaches(&u.candidate_version, &adv.package.evr)
                    }) {
                        u.security = true;
                        if !u.origins.contains(&adv.advisory) {
                            u.origins.push(adv.advisory.clone());
                        }
                    }
                }
            } else {
                inv.collection_errors.push(format!(
                    "dnf updateinfo list exited {:?}: {}",
                    out.exit_code,
                    last_lines(&out.stderr, 3)
                ));
            }
        }
    }
}

impl<R: Runner> PackageManager for Dnf<R> {
    fn name(&self) -> &'static str {
        "dnf"
    }

    fn collect_inventory(&self) -> Inventory {
        let mut inv = Inventory {
            package_manager: "dnf".into(),
            ..Default::default()
        };
        collect_host_facts(&self.paths, &mut inv);
        // The host facts measure apt's cache; dnf's is /var/cache/dnf.
        inv.collection_errors
            .retain(|e| !e.contains("/var/cache/apt/archives"));
        let cache = self.paths.at("/var/cache/dnf");
        inv.disk.cache_free_bytes = free_bytes(&cache)
            .or_else(|| free_bytes(&self.paths.root))
            .unwrap_or(0);
        let deadline = Instant::now() + INVENTORY_COMMAND_BUDGET;
        let mut log = RunLog::default();

        let entries = self.rpm_query(deadline, &mut log).unwrap_or_else(|e| {
            inv.collection_errors.push(e.to_string());
            Vec::new()
        });
        // Two versions of one package installed at once: a transaction was interrupted
        // between installing the new one and erasing the old one.
        let mut health = PackageManagerHealth::default();
        for (name, arch, evrs) in duplicates(&entries) {
            health.interrupted = true;
            health.broken_packages.push(name.clone());
            health.evidence.push(format!(
                "rpm: {name}.{arch} installed at {} versions ({}): an interrupted transaction",
                evrs.len(),
                evrs.join(", ")
            ));
        }
        health.evidence.truncate(MAX_EVIDENCE_LINES);
        inv.health = health;
        inv.packages = entries
            .iter()
            .map(|e| InstalledPackage {
                name: e.name.clone(),
                source: e.source.clone(),
                version: e.evr.clone(),
                source_version: e.source_version.clone(),
                arch: e.arch.clone(),
                status: "installed".into(),
            })
            .collect();

        match self.upgrades(&[], false, &[], deadline, &mut log) {
            Ok(ups) => {
                inv.upgradable = ups
                    .into_iter()
                    .filter_map(|u| {
                        let installed = installed(&entries, &u.name)?;
                        Some(UpgradablePackage {
                            name: u.name,
                            installed_version: installed,
                            candidate_version: u.evr,
                            arch: u.arch,
                            security: false,
                            origins: vec![u.repo],
                            held: false,
                        })
                    })
                    .collect();
            }
            Err(out) => inv.collection_errors.push(format!(
                "dnf repoquery --upgrades exited {:?}: {}",
                out.exit_code,
                last_lines(&out.stderr, 3)
            )),
        }

        self.add_holds(&mut inv, &entries, deadline, &mut log);
        self.flag_security_updates(&mut inv, deadline, &mut log);

        let (reboot, pkgs) = self.reboot_needed(&entries, deadline, &mut log);
        inv.reboot_required |= reboot;
        inv.reboot_required_packages.extend(pkgs);
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
    }

    impl Runner for Scripted {
        fn run(&self, argv: &[&str], _deadline: Option<Instant>) -> io::Result<CommandOutput> {
            let command = argv.join(" ");
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

    /// A captured lab fixture of patchwarden-core (see its tests/fixtures/dnf/README.md).
    fn captured(name: &str) -> CommandOutput {
        let path = format!(
            "{}/../core/tests/fixtures/dnf/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        if !text.starts_with("# command") {
            return out(0, &text, "");
        }
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

    fn row(name: &str, version: &str, release: &str) -> String {
        format!("{name}\t\t{version}\t{release}\tnoarch\t{name}-{version}-{release}.src.rpm\t1795646239\n")
    }

    fn dnf(script: Vec<(&'static str, CommandOutput)>) -> (Dnf<Scripted>, tempfile::TempDir) {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("etc")).expect("mkdir");
        std::fs::write(
            root.path().join("etc/os-release"),
            "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n",
        )
        .expect("write");
        let runner = Scripted {
            script: Mutex::new(script),
        };
        (
            Dnf::new(
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

    const NO_PLUGIN: &str = "No such command: versionlock. Please use /usr/bin/dnf --help\n";

    #[test]
    fn a_failed_post_at_the_new_version_fails_while_its_neighbour_verifies() {
        let before = [row("pw-ok", "1.0", "1"), row("pw-postfail", "1.0", "1")].concat();
        let after = [row("pw-ok", "2.0", "1"), row("pw-postfail", "2.0", "1")].concat();
        let (dnf, _root) = dnf(vec![
            ("rpm -qa", out(0, &before, "")),
            ("dnf -q --releasever=9 versionlock list", out(1, "", NO_PLUGIN)),
            ("rpm --eval", out(0, "/var/lib/rpm\n", "")),
            (
                "dnf -y --releasever=9 --refresh repoquery --upgrades",
                out(0, "pw-ok\t0\t2.0\t1\tnoarch\tlab\n\npw-postfail\t0\t2.0\t1\tnoarch\tlab\n", ""),
            ),
            (
                "dnf -y --releasever=9 --best --setopt=skip_if_unavailable=False --setopt=clean_requirements_on_remove=False upgrade pw-ok-2.0-1 pw-postfail-2.0-1",
                captured("install-two-postfail.txt"),
            ),
            ("rpm -qa", out(0, &after, "")),
        ]);
        let r = dnf.install(
            &[
                target("pw-ok", None),
                target("pw-postfail", Some("2.0-1")),
                target("pw-gone", Some("1.0-1")),
            ],
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
                ("pw-ok", PackageState::Verified, None),
                (
                    "pw-postfail",
                    PackageState::Failed,
                    Some(FailureClass::InstallScriptFailed)
                ),
                ("pw-gone", PackageState::NotApplicable, None),
            ]
        );
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(r.packages[1].installed_version.as_deref(), Some("2.0-1"));
        assert!(r.packages[1]
            .evidence
            .iter()
            .any(|e| e.contains("scriptlet failed")));
    }

    #[test]
    fn a_versionlocked_target_is_held_back_unless_the_deployment_overrides_holds() {
        let lock = "pw-ok-0:1.0-1.*\n";
        let (pm, _root) = dnf(vec![
            ("rpm -qa", out(0, &row("pw-ok", "1.0", "1"), "")),
            ("dnf -q --releasever=9 versionlock list", out(0, lock, "")),
        ]);
        let r = pm.install(
            &[target("pw-ok", Some("2.0-1"))],
            Duration::from_secs(600),
            InstallOptions::default(),
        );
        assert_eq!(
            (r.packages[0].state, r.packages[0].class),
            (PackageState::Skipped, Some(FailureClass::HeldBack))
        );
        assert_eq!(r.packages[0].evidence, ["locked by dnf versionlock"]);

        let (pm, _root) = dnf(vec![
            ("rpm -qa", out(0, &row("pw-ok", "1.0", "1"), "")),
            ("dnf -q --releasever=9 versionlock list", out(0, lock, "")),
            ("rpm --eval", out(0, "/var/lib/rpm\n", "")),
            (
                "dnf -y --releasever=9 --disableplugin=versionlock --refresh repoquery --upgrades",
                out(0, "pw-ok\t0\t2.0\t1\tnoarch\tlab\n", ""),
            ),
            (
                "dnf -y --releasever=9 --disableplugin=versionlock --best --setopt=skip_if_unavailable=False --setopt=clean_requirements_on_remove=False upgrade pw-ok-2.0-1",
                captured("install-ok.txt"),
            ),
            ("rpm -qa", out(0, &row("pw-ok", "2.0", "1"), "")),
            ("dnf -q --releasever=9 versionlock delete pw-ok", out(0, "", "")),
            ("dnf -q --releasever=9 versionlock add pw-ok", out(0, "", "")),
        ]);
        let r = pm.install(
            &[target("pw-ok", Some("2.0-1"))],
            Duration::from_secs(600),
            InstallOptions {
                respect_holds: false,
            },
        );
        assert_eq!(r.packages[0].state, PackageState::Verified, "{r:#?}");
        assert!(r.packages[0].evidence[0].contains("overrides holds"));
        assert!(r.packages[0].evidence[0].contains("now holds the version installed"));
        assert!(r
            .commands
            .iter()
            .any(|c| c.ends_with("versionlock add pw-ok")));
    }

    #[test]
    fn an_excluded_target_is_held_back_and_an_interrupted_database_refused() {
        let (dnf, root) = dnf(vec![
            (
                "rpm -qa",
                out(
                    0,
                    &[
                        row("pw-ok", "1.0", "1"),
                        row("pw-ex", "1.0", "1"),
                        row("pw-dup", "1.0", "1"),
                        row("pw-dup", "2.0", "1"),
                    ]
                    .concat(),
                    "",
                ),
            ),
            (
                "dnf -q --releasever=9 versionlock list",
                out(1, "", NO_PLUGIN),
            ),
            ("rpm --eval", out(0, "/var/lib/rpm\n", "")),
        ]);
        std::fs::create_dir_all(root.path().join("etc/dnf")).expect("mkdir");
        std::fs::write(
            root.path().join("etc/dnf/dnf.conf"),
            "[main]\ngpgcheck=1\nexclude=pw-e*\n",
        )
        .expect("write");
        let r = dnf.install(
            &[
                target("pw-ex", Some("2.0-1")),
                target("pw-ok", Some("2.0-1")),
            ],
            Duration::from_secs(600),
            InstallOptions::default(),
        );
        assert_eq!(
            (r.packages[0].state, r.packages[0].class),
            (PackageState::Skipped, Some(FailureClass::HeldBack))
        );
        assert_eq!(
            r.packages[0].evidence,
            ["excluded by `pw-e*` in [main] of /etc/dnf/dnf.conf"]
        );
        assert_eq!(
            (r.packages[1].state, r.packages[1].class),
            (PackageState::Failed, Some(FailureClass::InterruptedState))
        );
        assert!(r.packages[1].evidence[0].contains("pw-dup.noarch installed at 2 versions"));
        assert!(!r.commands.iter().any(|c| c.contains(" upgrade ")));
    }

    #[test]
    fn a_repository_down_fails_every_target_without_installing() {
        let (dnf, _root) = dnf(vec![
            ("rpm -qa", out(0, &row("pw-ok", "1.0", "1"), "")),
            (
                "dnf -q --releasever=9 versionlock list",
                out(1, "", NO_PLUGIN),
            ),
            ("rpm --eval", out(0, "/var/lib/rpm\n", "")),
            (
                "dnf -y --releasever=9 --refresh repoquery",
                captured("repoquery-repo-down.txt"),
            ),
        ]);
        let r = dnf.install(
            &[target("pw-ok", Some("2.0-1"))],
            Duration::from_secs(600),
            InstallOptions::default(),
        );
        assert_eq!(r.packages[0].state, PackageState::Failed);
        assert_eq!(r.packages[0].class, Some(FailureClass::RepoUnreachable));
        assert!(!r.commands.iter().any(|c| c.contains(" upgrade ")));
    }

    #[test]
    fn inventory_from_captured_outputs() {
        let rpm = [
            captured("rpm-qa.tsv").stdout,
            // An interrupted transaction left two versions of pw-sec.
            row("pw-sec", "0.9", "1"),
            "gpg-pubkey\t\tabc\t123\t(none)\t(none)\t1795646239\n".to_owned(),
        ]
        .concat();
        let (dnf, root) = dnf(vec![
            ("rpm -qa", out(0, &rpm, "")),
            (
                "dnf -q --releasever=9 repoquery --upgrades",
                captured("repoquery-upgrades.txt"),
            ),
            (
                "dnf -q --releasever=9 updateinfo list",
                captured("updateinfo-list.txt"),
            ),
            (
                "dnf -q --releasever=9 versionlock list",
                out(1, "", NO_PLUGIN),
            ),
        ]);
        std::fs::create_dir_all(root.path().join("proc")).expect("mkdir");
        std::fs::write(
            root.path().join("proc/stat"),
            "cpu 1 2 3\nbtime 1700000000\n",
        )
        .expect("write");
        let inv = dnf.collect_inventory();
        assert_eq!(inv.package_manager, "dnf");
        assert_eq!(inv.packages.len(), 12, "{:?}", inv.packages);
        assert!(inv.packages.iter().all(|p| p.status == "installed"));
        let epoch = inv
            .packages
            .iter()
            .find(|p| p.name == "pw-epoch")
            .expect("pw-epoch");
        assert_eq!(epoch.version, "2:1.0-1");
        assert!(inv.health.interrupted);
        assert_eq!(inv.health.broken_packages, ["pw-sec"]);
        let find = |n: &str| inv.upgradable.iter().find(|u| u.name == n).expect(n);
        assert_eq!(
            (
                find("pw-ok").candidate_version.as_str(),
                find("pw-ok").security
            ),
            ("2.0-1", false)
        );
        assert!(find("pw-sec").security);
        assert!(find("pw-sec").origins.contains(&"PW-2026-0001".to_owned()));
        assert_eq!(find("pw-epoch").candidate_version, "3:0.9-1");
        assert!(inv.held.is_empty());
        assert!(!inv.reboot_required);
        assert!(
            !inv.collection_errors
                .iter()
                .any(|e| e.contains("dnf") || e.contains("rpm")),
            "{:?}",
            inv.collection_errors
        );
    }
}
