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
use crate::pkg::common::{
    free_space, simulated_failure, size_growth, ScratchDir, SpaceCheck, PREFLIGHT_LOCK_WAIT,
};
use patchwarden_core::classify_dnf::attribute_specs;
use patchwarden_core::rpm::{parse_dnf_transaction, TransactionRow};

/// Where dnf downloads packages (its default `cachedir`).
const CACHE: &str = "/var/cache/dnf";
/// The largest transaction whose packages the check downloads (into a temporary directory)
/// to verify their checksums.
const DOWNLOAD_CHECK_LIMIT: u64 = 256 << 20;
/// `repoquery` format of the sizes: name, evr, download size, installed size (bytes).
const SIZE_FORMAT: &str = "%{name}\t%{evr}\t%{downloadsize}\t%{installsize}\n";

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

/// What the pre-flight check found out about the transaction, for the verdicts.
struct Transaction {
    rows: Vec<TransactionRow>,
    space: SpaceCheck,
    /// Why it would run out of space (empty: it fits).
    disk: Vec<String>,
    /// The packages were downloaded and matched the repository's checksums.
    checked_download: bool,
}

impl<R: Runner> Dnf<R> {
    /// Predicts what `install` of `targets` would do, changing nothing.
    pub(super) fn run_preflight(
        &self,
        targets: &[PackageTarget],
        options: InstallOptions,
    ) -> JobResult {
        let mut job = JobRun::preflight(targets);
        match self.preflight_steps(&mut job, options) {
            Ok(()) => job.finish(None, None),
            Err(stop) => job.stop(stop),
        }
    }

    /// The install's steps, each replaced by a probe that changes nothing; a step that
    /// predicts the failure of every remaining target stops the check.
    fn preflight_steps<'t>(
        &self,
        job: &mut JobRun<'t>,
        options: InstallOptions,
    ) -> Result<(), BackendError> {
        let before = self.read_package_db(job)?;
        let todo = self.settle_untouched_targets(job, &before, options, |hold| {
            format!("{}; the install will respect the hold", hold.describe())
        });
        if todo.remaining.is_empty() {
            return Ok(());
        }
        let consequence = format!(
            "an install now would wait up to {} s (lock wait) and fail as lock_held if it is not released",
            self.lock_wait.as_secs()
        );
        self.wait_for_locks(job, PREFLIGHT_LOCK_WAIT, &consequence)?;
        self.refuse_interrupted_state(job, &before)?;
        let cache = ScratchDir::new("patchwarden-preflight-dnf", &[]).map_err(|source| {
            BackendError::Scratch {
                what: "dnf cache directory",
                source,
            }
        })?;
        let cache_opt = format!("--setopt=cachedir={}", cache.path().display());
        let mut flags = override_flags(&todo.overridden);
        flags.push(cache_opt.as_str());
        let names: Vec<&str> = todo.remaining.iter().map(|t| t.name.as_str()).collect();
        let candidates = self.refresh_candidates(
            job,
            &names,
            &flags,
            "refreshing the repository metadata would fail; nothing would be installed",
        )?;
        let plan = self.resolve_plan(job, &todo.remaining, &candidates);
        if plan.is_empty() {
            return Ok(());
        }
        let Some(rows) = self.simulate_install(job, &plan, &flags) else {
            return Ok(());
        };
        let space = self.predict_space(job, &rows, &flags);
        let disk = space.shortfalls(
            |download, free| {
                format!("the install downloads {download} bytes into {CACHE}, only {free} bytes are free there")
            },
            "downloads",
        );
        let mut tx = Transaction {
            rows,
            space,
            disk,
            checked_download: false,
        };
        tx.checked_download = self.check_download(job, &tx, &flags, &cache)?;
        self.predict_outcomes(job, &plan, &todo.overridden, &tx);
        Ok(())
    }

    /// The planned transaction, resolved and stopped before anything is downloaded
    /// (`--assumeno`, against the throwaway cache). `None` when it does not resolve: then
    /// every planned target is predicted to fail as dnf's findings say.
    fn simulate_install(
        &self,
        job: &mut JobRun,
        plan: &[Planned],
        flags: &[&str],
    ) -> Option<Vec<TransactionRow>> {
        let specs: Vec<&str> = plan.iter().map(|p| p.spec.as_str()).collect();
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
        let sim = self.run(&args, job.deadline, &mut job.log);
        if resolved(&sim) {
            return Some(parse_dnf_transaction(&sim.stdout));
        }
        let mut findings = classify_dnf(&sim.stdout, &sim.stderr, sim.exit_code);
        let spec_names: Vec<(String, String)> = plan
            .iter()
            .map(|p| (p.spec.clone(), p.target.name.clone()))
            .collect();
        attribute_specs(&mut findings, &spec_names);
        for p in plan {
            let (class, evidence) =
                simulated_failure(&findings, &p.target.name, &sim, "dnf --assumeno");
            job.settle(
                p.target,
                PackageState::Failed,
                Some(class),
                p.target.version.clone(),
                evidence,
            );
        }
        None
    }

    /// The transaction's download sizes against the free space of /var/cache/dnf, and its
    /// installed-size growth against the free space of /.
    fn predict_space(
        &self,
        job: &mut JobRun,
        rows: &[TransactionRow],
        flags: &[&str],
    ) -> SpaceCheck {
        let root = free_space(&self.paths.at("/"));
        let mut space = SpaceCheck {
            cache: free_space(&self.paths.at(CACHE)).or(root),
            root,
            ..SpaceCheck::default()
        };
        if rows.is_empty() {
            return space;
        }
        let row_specs: Vec<String> = rows
            .iter()
            .map(|r| format!("{}-{}", r.name, r.evr))
            .collect();
        let mut q: Vec<&str> = flags.to_vec();
        q.extend(["repoquery", "--queryformat", SIZE_FORMAT]);
        q.extend(row_specs.iter().map(String::as_str));
        let sizes = parse_sizes(&self.dnf(true, &q, job.deadline, &mut job.log).stdout);
        let mut q: Vec<&str> = vec!["rpm", "-q", "--queryformat", "%{NAME}\t%{SIZE}\n"];
        q.extend(rows.iter().map(|r| r.name.as_str()));
        // rpm exits 1 when some name is not installed but still prints the others.
        let out = self.run(&q, job.deadline, &mut job.log);
        let mut installed: BTreeMap<String, u64> = BTreeMap::new();
        for line in out.stdout.lines() {
            if let Some((p, s)) = line.split_once('\t') {
                if let Ok(b) = s.trim().parse::<u64>() {
                    installed.entry(p.to_owned()).or_insert(b);
                }
            }
        }
        let size = |r: &TransactionRow| sizes.get(&r.name).copied().unwrap_or((0, 0));
        space.download = rows.iter().map(|r| size(r).0).sum();
        space.growth = size_growth(
            rows.iter().map(|r| (r.name.as_str(), size(r).1)),
            &installed,
        );
        space
    }

    /// The packages themselves, when they are not too big: downloaded into the throwaway
    /// cache, which checks them against the metadata's checksums as the install will. A
    /// failed download fails every planned target; `Ok(true)` when they were checked.
    fn check_download(
        &self,
        job: &mut JobRun,
        tx: &Transaction,
        flags: &[&str],
        cache: &ScratchDir,
    ) -> Result<bool, BackendError> {
        let temp_free = free_space(cache.path()).map(|f| f.0).unwrap_or(0);
        let download = tx.space.download;
        if !tx.disk.is_empty()
            || tx.rows.is_empty()
            || download > DOWNLOAD_CHECK_LIMIT
            || download >= temp_free / 2
        {
            return Ok(false);
        }
        let row_specs: Vec<String> = tx
            .rows
            .iter()
            .map(|r| format!("{}-{}", r.name, r.evr))
            .collect();
        let dest = format!("--destdir={}", cache.path().join("packages").display());
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["download", dest.as_str()]);
        args.extend(row_specs.iter().map(String::as_str));
        let out = self.dnf(false, &args, job.deadline, &mut job.log);
        let text = format!("{}{}", out.stdout, out.stderr);
        if out.success() {
            return Ok(true);
        }
        if text.contains("No such command") {
            job.log.note("dnf download is not available (dnf-plugins-core): the packages' checksums are not checked");
            return Ok(false);
        }
        let findings = classify_dnf(&out.stdout, &out.stderr, out.exit_code);
        let (class, mut evidence) = match findings.into_iter().next() {
            Some(f) => (f.class, f.evidence),
            None => (
                FailureClass::Unknown,
                vec![format!("dnf download exited {:?}", out.exit_code)],
            ),
        };
        evidence.insert(
            0,
            "downloading the packages fails; nothing would be installed".into(),
        );
        Err(BackendError::Repository {
            class,
            evidence,
            exit_code: None,
        })
    }

    /// Each planned target's prediction: nothing to do, `disk_full`, or `verified`.
    fn predict_outcomes(
        &self,
        job: &mut JobRun,
        plan: &[Planned],
        overridden: &[(&PackageTarget, Hold)],
        tx: &Transaction,
    ) {
        for p in plan {
            let t = p.target;
            let from = job.installed_before(&t.name);
            let Some(row) = tx.rows.iter().find(|r| r.name == t.name) else {
                job.settle(
                    t,
                    PackageState::NotApplicable,
                    None,
                    t.version.clone(),
                    vec![format!(
                        "the simulation installs nothing for {}: already at the newest available version {}",
                        t.name,
                        from.unwrap_or_default()
                    )],
                );
                continue;
            };
            let to = Some(row.evr.clone());
            if !tx.disk.is_empty() {
                job.settle(
                    t,
                    PackageState::Failed,
                    Some(FailureClass::DiskFull),
                    to,
                    tx.disk.clone(),
                );
                continue;
            }
            let mut evidence = vec![
                format!(
                    "would upgrade {} from {} to {}: repositories reachable, metadata valid, the simulated install resolves",
                    t.name,
                    from.as_deref().unwrap_or("(none)"),
                    row.evr
                ),
                format!(
                    "{} bytes to download, {} bytes to unpack; free: {} bytes in {CACHE}, {} bytes on /",
                    tx.space.download,
                    tx.space.growth,
                    tx.space.cache_free(),
                    tx.space.root_free()
                ),
            ];
            if tx.checked_download {
                evidence.push("the packages download and match the repository's checksums".into());
            }
            if let Some((_, hold)) = overridden.iter().find(|(o, _)| o.name == t.name) {
                evidence.insert(
                    0,
                    format!(
                        "{}; the deployment overrides holds (respect_holds: false)",
                        hold.describe()
                    ),
                );
            }
            job.settle(t, PackageState::Verified, None, to, evidence);
        }
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
}
