//! The apt pre-flight check: predicts what `install` would do, changing nothing on the device.
//!
//! The same steps as an install, each replaced by a side-effect-free probe:
//! - installed versions and holds (`dpkg-query`, `apt-mark showhold`) → `not_applicable`,
//!   `skipped`/`held_back`;
//! - package-manager health: the locks (probed with `F_GETLK`, waiting a few seconds only)
//!   → `lock_held`; dpkg's journal → `interrupted_state`;
//! - repository reachability and signatures: `apt-get update` into a temporary lists
//!   directory (`Dir::State::Lists`), with the package caches disabled and no locking, so
//!   the system's lists and caches stay as they are → `repo_unreachable`, `repo_invalid`;
//! - the planned install itself, simulated against those fresh lists (`apt-get -s install
//!   --no-remove --only-upgrade NAME=VERSION …`) and classified like a real run →
//!   `dependency_conflict`, `package_not_found`, …;
//! - free space: download sizes (`Size:`) against the free space of /var/cache/apt/archives,
//!   installed-size growth (`Installed-Size:`) against the free space of / → `disk_full`.
//!
//! Every evidence line starts with `prediction:`.

use super::*;
use std::path::Path;

/// Budget of the whole check.
const PREFLIGHT_BUDGET: Duration = Duration::from_secs(600);
/// The longest a pre-flight check waits for a package-manager lock.
const PREFLIGHT_LOCK_WAIT: Duration = Duration::from_secs(3);
const ARCHIVES: &str = "/var/cache/apt/archives";

fn predicted(line: impl AsRef<str>) -> String {
    let line = line.as_ref();
    if line.starts_with("prediction:") {
        line.to_owned()
    } else {
        format!("prediction: {line}")
    }
}

/// A temporary lists directory, removed on drop.
struct ScratchLists(PathBuf);

impl ScratchLists {
    fn new() -> std::io::Result<ScratchLists> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("patchwarden-preflight-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("partial"))?;
        Ok(ScratchLists(dir))
    }
}

impl Drop for ScratchLists {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Free bytes for an unprivileged-to-root writer, and the filesystem id.
fn free_space(path: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some((s.f_bavail.saturating_mul(s.f_frsize), s.f_fsid))
}

/// `(package, version) → (Size, Installed-Size in bytes)` from `apt-cache show` records.
fn parse_sizes(text: &str) -> BTreeMap<(String, String), (u64, u64)> {
    let mut out = BTreeMap::new();
    for record in text.split("\n\n") {
        let field = |name: &str| {
            record
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let (Some(p), Some(v)) = (field("Package:"), field("Version:")) else {
            continue;
        };
        let size = field("Size:").and_then(|s| s.parse().ok()).unwrap_or(0);
        let isize = field("Installed-Size:")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
        out.entry((p, v)).or_insert((size, isize));
    }
    out
}

impl<R: Runner> Apt<R> {
    /// Options that point apt at the scratch lists and keep it from writing anything of the
    /// system's: no lock, no binary caches, no sandbox user (the scratch dir is root's).
    fn scratch_options(lists: &ScratchLists) -> Vec<String> {
        [
            format!("Dir::State::Lists={}", lists.0.display()),
            "Debug::NoLocking=1".to_owned(),
            "Dir::Cache::pkgcache=".to_owned(),
            "Dir::Cache::srcpkgcache=".to_owned(),
            "APT::Sandbox::User=root".to_owned(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_owned(), o])
        .collect()
    }

    pub(super) fn run_preflight(
        &self,
        targets: &[PackageTarget],
        options: InstallOptions,
    ) -> JobResult {
        let started_at = now_rfc3339();
        let start = Instant::now();
        let deadline = start + PREFLIGHT_BUDGET;
        let mut log = RunLog::default();
        log.note("pre-flight check: every state below is a prediction; nothing is changed");
        let mut results: BTreeMap<String, PackageResult> = BTreeMap::new();
        let finish =
            |log: RunLog, results: BTreeMap<String, PackageResult>, error: Option<String>| {
                let mut results = results;
                let packages = targets
                    .iter()
                    .filter_map(|t| results.remove(&t.name))
                    .collect();
                JobResult {
                    started_at: started_at.clone(),
                    finished_at: now_rfc3339(),
                    commands: log.commands,
                    exit_code: None,
                    duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                    output: bound_output(&log.output, MAX_OUTPUT_BYTES),
                    packages,
                    error,
                    boot_id: None,
                }
            };
        let put = |results: &mut BTreeMap<String, PackageResult>,
                   t: &PackageTarget,
                   db: &PkgDb,
                   to: Option<String>,
                   state: PackageState,
                   class: Option<FailureClass>,
                   evidence: Vec<String>| {
            let evidence = evidence.iter().map(predicted).collect();
            results.insert(
                t.name.clone(),
                result(&t.name, state, class, db, to, evidence),
            );
        };

        // 1. Installed versions and holds.
        let before = match self.dpkg_query(&[], deadline, &mut log) {
            Ok(b) => b,
            Err(e) => {
                for t in targets {
                    put(
                        &mut results,
                        t,
                        &PkgDb::default(),
                        t.version.clone(),
                        PackageState::Failed,
                        Some(FailureClass::AgentError),
                        vec![e.clone()],
                    );
                }
                return finish(log, results, Some(e));
            }
        };
        let held = self.held(deadline, &mut log).unwrap_or_default();
        let mut remaining: Vec<&PackageTarget> = Vec::new();
        for t in targets {
            let db = db_of(&before, &t.name);
            let Some(installed) = db.version.clone() else {
                put(
                    &mut results,
                    t,
                    &db,
                    t.version.clone(),
                    PackageState::NotApplicable,
                    None,
                    vec!["not installed".into()],
                );
                continue;
            };
            if held.contains(&t.name) && options.respect_holds {
                put(
                    &mut results,
                    t,
                    &db,
                    t.version.clone(),
                    PackageState::Skipped,
                    Some(FailureClass::HeldBack),
                    vec!["held by apt-mark hold; the install will respect the hold".into()],
                );
                continue;
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
                    put(
                        &mut results,
                        t,
                        &db,
                        t.version.clone(),
                        PackageState::NotApplicable,
                        None,
                        vec![format!("already at {installed} (target {v})")],
                    );
                    continue;
                }
            }
            remaining.push(t);
        }
        let fail_all = |results: &mut BTreeMap<String, PackageResult>,
                        names: &[&PackageTarget],
                        class: FailureClass,
                        evidence: &[String]| {
            for t in names {
                put(
                    results,
                    t,
                    &db_of(&before, &t.name),
                    t.version.clone(),
                    PackageState::Failed,
                    Some(class),
                    evidence.to_vec(),
                );
            }
        };
        if remaining.is_empty() {
            return finish(log, results, None);
        }

        // 2. Health: locks (a short wait only), interrupted dpkg.
        let lock_until = Instant::now() + PREFLIGHT_LOCK_WAIT;
        let mut lock = self.held_lock();
        while lock.is_some() && Instant::now() < lock_until {
            std::thread::sleep(LOCK_POLL);
            lock = self.held_lock();
        }
        if let Some(held) = lock {
            let line = format!(
                "{held}: still held after {} s; an install now would wait up to {} s (lock wait) and fail as lock_held if it is not released",
                PREFLIGHT_LOCK_WAIT.as_secs(),
                self.lock_wait.as_secs()
            );
            log.note(&line);
            fail_all(&mut results, &remaining, FailureClass::LockHeld, &[line]);
            return finish(log, results, None);
        }
        if let Some(evidence) = self.interrupted_evidence(&before) {
            for line in &evidence {
                log.note(line);
            }
            fail_all(
                &mut results,
                &remaining,
                FailureClass::InterruptedState,
                &evidence,
            );
            return finish(log, results, None);
        }

        // 3. Repositories and signatures, into scratch lists.
        let lists = match ScratchLists::new() {
            Ok(l) => l,
            Err(e) => {
                let line = format!("could not create a temporary lists directory: {e}");
                fail_all(
                    &mut results,
                    &remaining,
                    FailureClass::AgentError,
                    std::slice::from_ref(&line),
                );
                return finish(log, results, Some(line));
            }
        };
        let opts = Self::scratch_options(&lists);
        let mut argv: Vec<&str> = vec!["apt-get", "update", "-o", "APT::Update::Error-Mode=any"];
        argv.extend(opts.iter().map(String::as_str));
        let update = self.run(&argv, deadline, &mut log);
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
            let mut ev = vec!["apt-get update would fail; nothing would be installed".to_owned()];
            ev.extend(evidence);
            fail_all(&mut results, &remaining, class, &ev);
            return finish(log, results, None);
        }

        // 4. The planned transaction, simulated against the fresh lists.
        let specs: Vec<String> = remaining
            .iter()
            .map(|t| match &t.version {
                Some(v) => format!("{}={v}", t.name),
                None => t.name.clone(),
            })
            .collect();
        let mut argv: Vec<&str> = vec!["apt-get", "-s"];
        argv.extend(opts.iter().map(String::as_str));
        argv.extend(["install", "--no-remove", "--only-upgrade"]);
        if !options.respect_holds {
            argv.push("--allow-change-held-packages");
        }
        argv.extend(specs.iter().map(String::as_str));
        let sim = self.run(&argv, deadline, &mut log);
        if !sim.success() {
            let findings = classify_apt(&sim.stdout, &sim.stderr, sim.exit_code);
            for t in &remaining {
                let chosen = findings
                    .iter()
                    .find(|f| f.package.as_deref() == Some(t.name.as_str()))
                    .or_else(|| findings.iter().find(|f| f.package.is_none()))
                    .or_else(|| findings.first());
                let (class, mut ev) = match chosen {
                    Some(f) => (f.class, f.evidence.clone()),
                    None => (
                        FailureClass::Unknown,
                        vec![format!(
                            "apt-get -s exited {:?} with no recognised message",
                            sim.exit_code
                        )],
                    ),
                };
                if sim.timed_out {
                    ev.push("the simulation ran out of the time budget".into());
                }
                ev.insert(
                    0,
                    "the simulated install fails; nothing would be installed".into(),
                );
                put(
                    &mut results,
                    t,
                    &db_of(&before, &t.name),
                    t.version.clone(),
                    PackageState::Failed,
                    Some(class),
                    ev,
                );
            }
            return finish(log, results, None);
        }
        let inst = parse_apt_simulation(&sim.stdout);

        // 5. Free space for what the transaction downloads and unpacks.
        let mut show: Vec<&str> = vec!["apt-cache"];
        show.extend(opts.iter().map(String::as_str));
        show.push("show");
        let show_specs: Vec<String> = inst
            .iter()
            .map(|s| format!("{}={}", s.name, s.new_version))
            .collect();
        show.extend(show_specs.iter().map(String::as_str));
        let sizes = if inst.is_empty() {
            BTreeMap::new()
        } else {
            parse_sizes(&self.run(&show, deadline, &mut log).stdout)
        };
        let mut old_sizes: BTreeMap<String, u64> = BTreeMap::new();
        if !inst.is_empty() {
            let mut q: Vec<&str> = vec!["dpkg-query", "-W", "-f=${Package}\t${Installed-Size}\n"];
            q.extend(inst.iter().map(|s| s.name.as_str()));
            let out = self.run(&q, deadline, &mut log);
            for line in out.stdout.lines() {
                if let Some((p, s)) = line.split_once('\t') {
                    if let Ok(kib) = s.trim().parse::<u64>() {
                        old_sizes.insert(p.to_owned(), kib * 1024);
                    }
                }
            }
        }
        let mut download = 0u64;
        let mut growth = 0i64;
        for s in &inst {
            let (size, isize) = sizes
                .get(&(s.name.clone(), s.new_version.clone()))
                .copied()
                .unwrap_or((0, 0));
            let cached = self.paths.at(ARCHIVES).join(format!(
                "{}_{}_{}.deb",
                s.name,
                s.new_version.replace(':', "%3a"),
                s.arch
            ));
            if !cached.exists() {
                download += size;
            }
            growth += isize as i64 - old_sizes.get(&s.name).copied().unwrap_or(0) as i64;
        }
        let growth = growth.max(0) as u64;
        let archives = free_space(&self.paths.at(ARCHIVES));
        let root = free_space(&self.paths.at("/"));
        let mut disk: Vec<String> = Vec::new();
        if let Some((free, _)) = archives {
            if download > free {
                disk.push(format!("the install needs {download} bytes of archives in {ARCHIVES}/, only {free} bytes are free (apt would stop: You don't have enough free space in {ARCHIVES}/)"));
            }
        }
        if let Some((free, fsid)) = root {
            let shared = archives.is_some_and(|(_, a)| a == fsid);
            let need = growth + if shared { download } else { 0 };
            if need > free {
                disk.push(format!("the install needs {need} bytes more on / (unpacked{}), only {free} bytes are free", if shared { " plus archives" } else { "" }));
            }
        }
        for t in &remaining {
            let db = db_of(&before, &t.name);
            let planned = inst.iter().find(|s| s.name == t.name);
            let Some(planned) = planned else {
                let installed = db.version.clone().unwrap_or_default();
                put(&mut results, t, &db, t.version.clone(), PackageState::NotApplicable, None, vec![format!("the simulation installs nothing for {}: already at the newest available version {installed}", t.name)]);
                continue;
            };
            let to = Some(planned.new_version.clone());
            if !disk.is_empty() {
                put(
                    &mut results,
                    t,
                    &db,
                    to,
                    PackageState::Failed,
                    Some(FailureClass::DiskFull),
                    disk.clone(),
                );
                continue;
            }
            put(&mut results, t, &db, to, PackageState::Verified, None, vec![
                format!(
                    "would upgrade {} from {} to {}: repositories reachable, signatures valid, the simulated install succeeds",
                    t.name,
                    planned.old_version.as_deref().unwrap_or("(none)"),
                    planned.new_version
                ),
                format!("{download} bytes to download, {} bytes to unpack; free: {} bytes in {ARCHIVES}, {} bytes on /", growth, archives.map(|a| a.0).unwrap_or(0), root.map(|r| r.0).unwrap_or(0)),
            ]);
        }
        finish(log, results, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_apt_cache_show() {
        let text = "Package: pw-big\nVersion: 2.0\nInstalled-Size: 4100\nSize: 4198000\n\nPackage: pw-ok\nVersion: 2.0\nSize: 900\nInstalled-Size: 9\n";
        let s = parse_sizes(text);
        assert_eq!(s[&("pw-big".into(), "2.0".into())], (4198000, 4100 * 1024));
        assert_eq!(s[&("pw-ok".into(), "2.0".into())], (900, 9 * 1024));
    }

    #[test]
    fn every_line_is_marked_as_a_prediction() {
        assert_eq!(predicted("held"), "prediction: held");
        assert_eq!(predicted("prediction: x"), "prediction: x");
    }
}
