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
use crate::pkg::common::{
    free_space, simulated_failure, size_growth, ScratchDir, SpaceCheck, PREFLIGHT_LOCK_WAIT,
};
use patchwarden_core::apt::SimulatedInstall;
use std::collections::BTreeMap;

const ARCHIVES: &str = "/var/cache/apt/archives";

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

/// Options that point apt at the scratch lists and keep it from writing anything of the
/// system's: no lock, no binary caches, no sandbox user (the scratch dir is root's).
fn scratch_options(lists: &ScratchDir) -> Vec<String> {
    [
        format!("Dir::State::Lists={}", lists.path().display()),
        "Debug::NoLocking=1".to_owned(),
        "Dir::Cache::pkgcache=".to_owned(),
        "Dir::Cache::srcpkgcache=".to_owned(),
        "APT::Sandbox::User=root".to_owned(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_owned(), o])
    .collect()
}

impl<R: Runner> Apt<R> {
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
        let todo = self.settle_untouched_targets(
            job,
            &before,
            options,
            "held by apt-mark hold; the install will respect the hold",
        );
        if todo.remaining.is_empty() {
            return Ok(());
        }
        let consequence = format!(
            "an install now would wait up to {} s (lock wait) and fail as lock_held if it is not released",
            self.lock_wait.as_secs()
        );
        self.wait_for_locks(job, PREFLIGHT_LOCK_WAIT, &consequence)?;
        self.refuse_interrupted_state(job, &before)?;
        let lists = ScratchDir::new("patchwarden-preflight", &["partial"]).map_err(|source| {
            BackendError::Scratch {
                what: "lists directory",
                source,
            }
        })?;
        let opts = scratch_options(&lists);
        self.refresh_lists(
            job,
            &opts,
            "apt-get update would fail; nothing would be installed",
        )?;
        let Some(inst) = self.simulate_install(job, &todo.remaining, &opts, options) else {
            return Ok(());
        };
        let space = self.predict_space(job, &inst, &opts);
        self.predict_outcomes(job, &todo.remaining, &inst, &space);
        Ok(())
    }

    /// The planned transaction, simulated against the scratch lists. `None` when it fails:
    /// then every remaining target is predicted to fail as the simulation's findings say.
    fn simulate_install(
        &self,
        job: &mut JobRun,
        remaining: &[&PackageTarget],
        opts: &[String],
        options: InstallOptions,
    ) -> Option<Vec<SimulatedInstall>> {
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
        let sim = self.run(&argv, job.deadline, &mut job.log);
        if sim.success() {
            return Some(parse_apt_simulation(&sim.stdout));
        }
        let findings = classify_apt(&sim.stdout, &sim.stderr, sim.exit_code);
        for t in remaining {
            let (class, evidence) = simulated_failure(&findings, &t.name, &sim, "apt-get -s");
            job.settle(
                t,
                PackageState::Failed,
                Some(class),
                t.version.clone(),
                evidence,
            );
        }
        None
    }

    /// What the transaction downloads (`Size:`, unless already in the archives) and how much
    /// the installed size grows (`Installed-Size:`), against the free space of the archives
    /// and of /.
    fn predict_space(
        &self,
        job: &mut JobRun,
        inst: &[SimulatedInstall],
        opts: &[String],
    ) -> SpaceCheck {
        let mut space = SpaceCheck {
            cache: free_space(&self.paths.at(ARCHIVES)),
            root: free_space(&self.paths.at("/")),
            ..SpaceCheck::default()
        };
        if inst.is_empty() {
            return space;
        }
        let mut show: Vec<&str> = vec!["apt-cache"];
        show.extend(opts.iter().map(String::as_str));
        show.push("show");
        let show_specs: Vec<String> = inst
            .iter()
            .map(|s| format!("{}={}", s.name, s.new_version))
            .collect();
        show.extend(show_specs.iter().map(String::as_str));
        let sizes = parse_sizes(&self.run(&show, job.deadline, &mut job.log).stdout);
        let mut q: Vec<&str> = vec!["dpkg-query", "-W", "-f=${Package}\t${Installed-Size}\n"];
        q.extend(inst.iter().map(|s| s.name.as_str()));
        let out = self.run(&q, job.deadline, &mut job.log);
        let mut installed: BTreeMap<String, u64> = BTreeMap::new();
        for line in out.stdout.lines() {
            if let Some((p, s)) = line.split_once('\t') {
                if let Ok(kib) = s.trim().parse::<u64>() {
                    installed.insert(p.to_owned(), kib * 1024);
                }
            }
        }
        let size = |s: &SimulatedInstall| {
            sizes
                .get(&(s.name.clone(), s.new_version.clone()))
                .copied()
                .unwrap_or((0, 0))
        };
        for s in inst {
            let cached = self.paths.at(ARCHIVES).join(format!(
                "{}_{}_{}.deb",
                s.name,
                s.new_version.replace(':', "%3a"),
                s.arch
            ));
            if !cached.exists() {
                space.download += size(s).0;
            }
        }
        space.growth = size_growth(
            inst.iter().map(|s| (s.name.as_str(), size(s).1)),
            &installed,
        );
        space
    }

    /// Each remaining target's prediction: nothing to do, `disk_full`, or `verified`.
    fn predict_outcomes(
        &self,
        job: &mut JobRun,
        remaining: &[&PackageTarget],
        inst: &[SimulatedInstall],
        space: &SpaceCheck,
    ) {
        let disk = space.shortfalls(
            |download, free| format!("the install needs {download} bytes of archives in {ARCHIVES}/, only {free} bytes are free (apt would stop: You don't have enough free space in {ARCHIVES}/)"),
            "archives",
        );
        for t in remaining {
            let Some(planned) = inst.iter().find(|s| s.name == t.name) else {
                let installed = job.installed_before(&t.name).unwrap_or_default();
                job.settle(t, PackageState::NotApplicable, None, t.version.clone(), vec![format!("the simulation installs nothing for {}: already at the newest available version {installed}", t.name)]);
                continue;
            };
            let to = Some(planned.new_version.clone());
            if !disk.is_empty() {
                job.settle(
                    t,
                    PackageState::Failed,
                    Some(FailureClass::DiskFull),
                    to,
                    disk.clone(),
                );
                continue;
            }
            job.settle(t, PackageState::Verified, None, to, vec![
                format!(
                    "would upgrade {} from {} to {}: repositories reachable, signatures valid, the simulated install succeeds",
                    t.name,
                    planned.old_version.as_deref().unwrap_or("(none)"),
                    planned.new_version
                ),
                format!("{} bytes to download, {} bytes to unpack; free: {} bytes in {ARCHIVES}, {} bytes on /", space.download, space.growth, space.cache_free(), space.root_free()),
            ]);
        }
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
}
