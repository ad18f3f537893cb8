//! The dnf pre-flight check: predicts what `install` would do, changing nothing on the device.
//!
//! The same steps as an install, each replaced by a side-effect-free probe:
//! - installed versions and holds (`rpm -qa`, `dnf versionlock list`, exclude patterns) →
//!   `not_applicable`, `skipped`/`held_back` (unless the deployment overrides holds);
//! - package-manager health: dnf's pid-file locks and rpm's transaction lock (probed, waiting
//!   a few seconds only) → `lock_held`; two versions of one package → `interrupted_state`;
//! - repository reachability, metadata checksums and signatures: `dnf repoquery --upgrades`
//!   with a throwaway `cachedir`, so the system's metadata cache stays as it is →
//!   `repo_unreachable`, `repo_invalid`;
//! - the planned install itself: the same `dnf upgrade NAME-EVR …` with `--assumeno` against
//!   that cache (dnf resolves the transaction, prints it and stops before downloading or
//!   taking the rpm lock), classified like a real run → `dependency_conflict`,
//!   `package_not_found`, …;
//! - free space: the transaction's download sizes against the free space of /var/cache/dnf,
//!   the installed-size growth against the free space of / → `disk_full`.
//!
//! - the packages themselves (transactions up to 256 MiB): `dnf download` into the throwaway
//!   cache checks them against the metadata's checksums → `repo_invalid`.
//!
//! Every evidence line starts with `prediction:`. Not checked: package GPG signatures (dnf
//! checks them only when it installs, and may import keys then).

use super::*;
use patchwarden_core::rpm::parse_dnf_transaction;
use std::path::{Path, PathBuf};

/// Budget of the whole check.
const PREFLIGHT_BUDGET: Duration = Duration::from_secs(600);
/// The longest a pre-flight check waits for a package-manager lock.
const PREFLIGHT_LOCK_WAIT: Duration = Duration::from_secs(3);
/// Where dnf downloads packages (its default `cachedir`).
const CACHE: &str = "/var/cache/dnf";
/// The largest transaction whose packages the check downloads (into a temporary directory)
/// to verify their checksums.
const DOWNLOAD_CHECK_LIMIT: u64 = 256 << 20;
/// `repoquery` format of the sizes: name, evr, download size, installed size (bytes).
const SIZE_FORMAT: &str = "%{name}\t%{evr}\t%{downloadsize}\t%{installsize}\n";

fn predicted(line: impl AsRef<str>) -> String {
    let line = line.as_ref();
    if line.starts_with("prediction:") {
        line.to_owned()
    } else {
        format!("prediction: {line}")
    }
}

/// A throwaway dnf cache directory, removed on drop.
struct ScratchCache(PathBuf);

impl ScratchCache {
    fn new() -> std::io::Result<ScratchCache> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "patchwarden-preflight-dnf-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        Ok(ScratchCache(dir))
    }

    fn option(&self) -> String {
        format!("--setopt=cachedir={}", self.0.display())
    }
}

impl Drop for ScratchCache {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Free bytes for root and the filesystem id.
fn free_space(path: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some((s.f_bavail.saturating_mul(s.f_frsize), s.f_fsid))
}

/// `name → (download size, installed size)` from `repoquery --queryformat SIZE_FORMAT`.
fn parse_sizes(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 4 {
            continue;
        }
        let (Ok(d), Ok(i)) = (f[2].trim().parse::<u64>(), f[3].trim().parse::<u64>()) else {
            continue;
        };
        out.entry(f[0].to_owned()).or_insert((d, i));
    }
    out
}

/// Whether `--assumeno` stopped at the confirmation: the transaction resolved.
fn resolved(out: &CommandOutput) -> bool {
    if out.success() {
        return true;
    }
    let text = format!("{}{}", out.stdout, out.stderr);
    text.contains("Operation aborted")
        && classify_dnf(&out.stdout, &out.stderr, out.exit_code)
            .iter()
            .all(|f| f.class == FailureClass::Unknown)
}

impl<R: Runner> Dnf<R> {
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
                   from: Option<String>,
                   to: Option<String>,
                   state: PackageState,
                   class: Option<FailureClass>,
                   evidence: Vec<String>| {
            let mut evidence: Vec<String> = evidence.iter().map(predicted).collect();
            evidence.truncate(MAX_EVIDENCE_LINES);
            results.insert(
                t.name.clone(),
                PackageResult {
                    package: t.name.clone(),
                    state,
                    class,
                    from_version: from.clone(),
                    to_version: to,
                    installed_version: from,
                    evidence,
                },
            );
        };

        // 1. Installed versions and holds.
        let before = match self.rpm_query(deadline, &mut log) {
            Ok(b) => b,
            Err(e) => {
                for t in targets {
                    put(
                        &mut results,
                        t,
                        None,
                        t.version.clone(),
                        PackageState::Failed,
                        Some(FailureClass::AgentError),
                        vec![e.clone()],
                    );
                }
                return finish(log, results, Some(e));
            }
        };
        let holds = self.holds(deadline, &mut log);
        let mut remaining: Vec<&PackageTarget> = Vec::new();
        let mut overridden: Vec<(&PackageTarget, Hold)> = Vec::new();
        for t in targets {
            let Some(current) = installed(&before, &t.name) else {
                put(
                    &mut results,
                    t,
                    None,
                    t.version.clone(),
                    PackageState::NotApplicable,
                    None,
                    vec!["not installed".into()],
                );
                continue;
            };
            if let Some(hold) = holds.of(&t.name) {
                if options.respect_holds {
                    put(
                        &mut results,
                        t,
                        Some(current),
                        t.version.clone(),
                        PackageState::Skipped,
                        Some(FailureClass::HeldBack),
                        vec![format!(
                            "{}; the install will respect the hold",
                            hold.describe()
                        )],
                    );
                    continue;
                }
                overridden.push((t, hold));
            }
            if let Some(v) = &t.version {
                if reaches(&current, v) {
                    put(
                        &mut results,
                        t,
                        Some(current.clone()),
                        t.version.clone(),
                        PackageState::NotApplicable,
                        None,
                        vec![format!("already at {current} (target {v})")],
                    );
                    continue;
                }
            }
            remaining.push(t);
        }
        if remaining.is_empty() {
            return finish(log, results, None);
        }
        let fail_all = |results: &mut BTreeMap<String, PackageResult>,
                        names: &[&PackageTarget],
                        class: FailureClass,
                        evidence: &[String]| {
            for t in names {
                put(
                    results,
                    t,
                    installed(&before, &t.name),
                    t.version.clone(),
                    PackageState::Failed,
                    Some(class),
                    evidence.to_vec(),
                );
            }
        };

        // 2. Health: locks (a short wait only), interrupted transactions.
        if let Err(line) = self.wait_for_locks(PREFLIGHT_LOCK_WAIT, deadline, &mut log) {
            let line = format!(
                "{line}; an install now would wait up to {} s (lock wait) and fail as lock_held if it is not released",
                self.lock_wait.as_secs()
            );
            fail_all(&mut results, &remaining, FailureClass::LockHeld, &[line]);
            return finish(log, results, None);
        }
        if let Some(evidence) = interrupted_evidence(&before) {
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

        // 3. Repositories, metadata checksums and signatures, into a throwaway cache; the
        //    candidates of targets without a version.
        let cache = match ScratchCache::new() {
            Ok(c) => c,
            Err(e) => {
                let line = format!("could not create a temporary dnf cache directory: {e}");
                fail_all(
                    &mut results,
                    &remaining,
                    FailureClass::AgentError,
                    std::slice::from_ref(&line),
                );
                return finish(log, results, Some(line));
            }
        };
        let cache_opt = cache.option();
        let mut flags = override_flags(&overridden);
        flags.push(cache_opt.as_str());
        let names: Vec<&str> = remaining.iter().map(|t| t.name.as_str()).collect();
        let candidates = match self.upgrades(&names, true, &flags, deadline, &mut log) {
            Ok(c) => c,
            Err(out) => {
                let (class, mut evidence) = if out.timed_out {
                    (
                        FailureClass::Timeout,
                        vec!["dnf repoquery ran out of the time budget".to_owned()],
                    )
                } else {
                    match classify_dnf(&out.stdout, &out.stderr, out.exit_code)
                        .into_iter()
                        .next()
                    {
                        Some(f) => (f.class, f.evidence),
                        None => (
                            FailureClass::Unknown,
                            vec![format!("dnf repoquery exited {:?}", out.exit_code)],
                        ),
                    }
                };
                evidence.insert(
                    0,
                    "refreshing the repository metadata would fail; nothing would be installed"
                        .to_owned(),
                );
                fail_all(&mut results, &remaining, class, &evidence);
                return finish(log, results, None);
            }
        };

        // 4. The version to install: the job's, or the newest candidate.
        let mut plan: Vec<(&PackageTarget, String)> = Vec::new(); // (target, spec)
        for t in remaining {
            let current = installed(&before, &t.name);
            match &t.version {
                Some(v) => plan.push((t, format!("{}-{v}", t.name))),
                None => {
                    let newest = candidates
                        .iter()
                        .filter(|c| c.name == t.name)
                        .max_by(|a, b| compare_rpm(&a.evr, &b.evr).unwrap_or(Ordering::Equal));
                    match newest {
                        Some(c) => plan.push((t, format!("{}-{}", t.name, c.evr))),
                        None => put(
                            &mut results,
                            t,
                            current.clone(),
                            None,
                            PackageState::NotApplicable,
                            None,
                            vec![format!(
                                "already at the newest available version {}",
                                current.clone().unwrap_or_default()
                            )],
                        ),
                    }
                }
            }
        }
        if plan.is_empty() {
            return finish(log, results, None);
        }

        // 5. The planned transaction, resolved and stopped before anything is downloaded.
        let specs: Vec<&str> = plan.iter().map(|(_, s)| s.as_str()).collect();
        // Neither -q (it hides the transaction table) nor -y.
        let rv = self
            .releasever
            .as_ref()
            .map(|r| format!("--releasever={r}"));
        let mut args: Vec<&str> = vec!["dnf", "--assumeno"];
        args.extend(rv.as_deref());
        args.extend(flags.iter().copied());
        args.extend([
            "--best",
            "--setopt=skip_if_unavailable=False",
            "--setopt=clean_requirements_on_remove=False",
            "upgrade",
        ]);
        args.extend(specs.iter().copied());
        let sim = self.run(&args, deadline, &mut log);
        if !resolved(&sim) {
            let mut findings = classify_dnf(&sim.stdout, &sim.stderr, sim.exit_code);
            let spec_names: Vec<(String, String)> = plan
                .iter()
                .map(|(t, s)| (s.clone(), t.name.clone()))
                .collect();
            attribute_specs(&mut findings, &spec_names);
            for (t, _) in &plan {
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
                            "dnf --assumeno exited {:?} with no recognised message",
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
                    installed(&before, &t.name),
                    t.version.clone(),
                    PackageState::Failed,
                    Some(class),
                    ev,
                );
            }
            return finish(log, results, None);
        }
        let rows = parse_dnf_transaction(&sim.stdout);

        // 6. Free space for what the transaction downloads and unpacks.
        let row_specs: Vec<String> = rows
            .iter()
            .map(|r| format!("{}-{}", r.name, r.evr))
            .collect();
        let sizes = if rows.is_empty() {
            BTreeMap::new()
        } else {
            let mut q: Vec<&str> = flags.clone();
            q.extend(["repoquery", "--queryformat", SIZE_FORMAT]);
            q.extend(row_specs.iter().map(String::as_str));
            parse_sizes(&self.dnf(true, &q, deadline, &mut log).stdout)
        };
        let mut old_sizes: BTreeMap<String, u64> = BTreeMap::new();
        if !rows.is_empty() {
            let mut q: Vec<&str> = vec!["rpm", "-q", "--queryformat", "%{NAME}\t%{SIZE}\n"];
            q.extend(rows.iter().map(|r| r.name.as_str()));
            // rpm exits 1 when some name is not installed but still prints the others.
            let out = self.run(&q, deadline, &mut log);
            for line in out.stdout.lines() {
                if let Some((p, s)) = line.split_once('\t') {
                    if let Ok(b) = s.trim().parse::<u64>() {
                        old_sizes.entry(p.to_owned()).or_insert(b);
                    }
                }
            }
        }
        let mut download = 0u64;
        let mut growth = 0i64;
        for r in &rows {
            let (d, i) = sizes.get(&r.name).copied().unwrap_or((0, 0));
            download += d;
            growth += i as i64 - old_sizes.get(&r.name).copied().unwrap_or(0) as i64;
        }
        let growth = growth.max(0) as u64;
        let cache_path = self.paths.at(CACHE);
        let cache_free = free_space(&cache_path).or_else(|| free_space(&self.paths.at("/")));
        let root = free_space(&self.paths.at("/"));
        let mut disk: Vec<String> = Vec::new();
        if let Some((free, _)) = cache_free {
            if download > free {
                disk.push(format!("the install downloads {download} bytes into {CACHE}, only {free} bytes are free there"));
            }
        }
        if let Some((free, fsid)) = root {
            let shared = cache_free.is_some_and(|(_, c)| c == fsid);
            let need = growth + if shared { download } else { 0 };
            if need > free {
                disk.push(format!(
                    "the install needs {need} bytes more on / (unpacked{}), only {free} bytes are free",
                    if shared { " plus downloads" } else { "" }
                ));
            }
        }
        // 7. The packages themselves, when they are not too big: downloaded into the scratch
        //    cache, which checks them against the metadata's checksums as the install will.
        let mut checked_download = false;
        let temp_free = free_space(&cache.0).map(|f| f.0).unwrap_or(0);
        if disk.is_empty()
            && !rows.is_empty()
            && download <= DOWNLOAD_CHECK_LIMIT
            && download < temp_free / 2
        {
            let dest = format!("--destdir={}", cache.0.join("packages").display());
            let mut args: Vec<&str> = flags.clone();
            args.extend(["download", dest.as_str()]);
            args.extend(row_specs.iter().map(String::as_str));
            let out = self.dnf(false, &args, deadline, &mut log);
            let text = format!("{}{}", out.stdout, out.stderr);
            if out.success() {
                checked_download = true;
            } else if text.contains("No such command") {
                log.note("dnf download is not available (dnf-plugins-core): the packages' checksums are not checked");
            } else {
                let findings = classify_dnf(&out.stdout, &out.stderr, out.exit_code);
                let (class, mut ev) = match findings.into_iter().next() {
                    Some(f) => (f.class, f.evidence),
                    None => (
                        FailureClass::Unknown,
                        vec![format!("dnf download exited {:?}", out.exit_code)],
                    ),
                };
                ev.insert(
                    0,
                    "downloading the packages fails; nothing would be installed".into(),
                );
                let planned: Vec<&PackageTarget> = plan.iter().map(|(t, _)| *t).collect();
                fail_all(&mut results, &planned, class, &ev);
                return finish(log, results, None);
            }
        }

        for (t, _) in &plan {
            let from = installed(&before, &t.name);
            let Some(row) = rows.iter().find(|r| r.name == t.name) else {
                put(
                    &mut results,
                    t,
                    from.clone(),
                    t.version.clone(),
                    PackageState::NotApplicable,
                    None,
                    vec![format!(
                        "the simulation installs nothing for {}: already at the newest available version {}",
                        t.name,
                        from.clone().unwrap_or_default()
                    )],
                );
                continue;
            };
            let to = Some(row.evr.clone());
            if !disk.is_empty() {
                put(
                    &mut results,
                    t,
                    from,
                    to,
                    PackageState::Failed,
                    Some(FailureClass::DiskFull),
                    disk.clone(),
                );
                continue;
            }
            let mut ev = vec![
                format!(
                    "would upgrade {} from {} to {}: repositories reachable, metadata valid, the simulated install resolves",
                    t.name,
                    from.as_deref().unwrap_or("(none)"),
                    row.evr
                ),
                format!(
                    "{download} bytes to download, {growth} bytes to unpack; free: {} bytes in {CACHE}, {} bytes on /",
                    cache_free.map(|c| c.0).unwrap_or(0),
                    root.map(|r| r.0).unwrap_or(0)
                ),
            ];
            if checked_download {
                ev.push("the packages download and match the repository's checksums".into());
            }
            if let Some((_, hold)) = overridden.iter().find(|(o, _)| o.name == t.name) {
                ev.insert(
                    0,
                    format!(
                        "{}; the deployment overrides holds (respect_holds: false)",
                        hold.describe()
                    ),
                );
            }
            put(&mut results, t, from, to, PackageState::Verified, None, ev);
        }
        finish(log, results, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_repoquery() {
        let s = parse_sizes("pw-big\t2.0-1\t4198000\t4200000\nbad line\npw-ok\t2:1.0-1\t900\t9\n");
        assert_eq!(s["pw-big"], (4198000, 4200000));
        assert_eq!(s["pw-ok"], (900, 9));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn assumeno_stops_at_the_confirmation_or_fails() {
        let aborted = CommandOutput {
            exit_code: Some(1),
            stdout: "Upgrading:\n pw-ok  noarch  2.0-1  lab  6.0 k\n".into(),
            stderr: "Operation aborted.\n".into(),
            ..Default::default()
        };
        assert!(resolved(&aborted));
        let conflict = CommandOutput {
            exit_code: Some(1),
            stdout: String::new(),
            stderr: "Error: \n Problem: cannot install the best update candidate for package pw-dep-1.0-1.noarch\n  - nothing provides pw-missing >= 1 needed by pw-dep-2.0-1.noarch\n".into(),
            ..Default::default()
        };
        assert!(!resolved(&conflict));
        let nothing = CommandOutput {
            exit_code: Some(0),
            stdout: "Dependencies resolved.\nNothing to do.\nComplete!\n".into(),
            ..Default::default()
        };
        assert!(resolved(&nothing));
    }

    #[test]
    fn every_line_is_marked_as_a_prediction() {
        assert_eq!(predicted("held"), "prediction: held");
        assert_eq!(predicted("prediction: x"), "prediction: x");
    }
}
