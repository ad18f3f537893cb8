//! The dnf install, as named steps: read the rpm database, settle what needs nothing, wait
//! for the locks, refuse an interrupted transaction, refresh the metadata and candidates,
//! resolve the plan, run one transaction, and judge every package from rpm afterwards
//! (then keep overridden versionlocks on the version now installed).

use super::*;
use crate::inventory::reboot_required_packages;
use patchwarden_core::classify_dnf::attribute_specs;
use patchwarden_core::outcome::RunEvidence;
use patchwarden_core::outcome_rpm::decide_rpm;
use patchwarden_wire::agent::PackageResult;
use tracing::info;

/// What the transaction did, for the verdict.
struct Transaction<'t> {
    before: Vec<RpmEntry>,
    plan: Vec<Planned<'t>>,
    /// Held targets in the plan whose hold the deployment overrides.
    overridden: Vec<(&'t PackageTarget, Hold)>,
    install: CommandOutput,
}

impl<R: Runner> Dnf<R> {
    /// Upgrades the installed `targets` within `budget`; every package's end state as rpm
    /// shows it afterwards.
    pub(super) fn install_targets(
        &self,
        targets: &[PackageTarget],
        budget: Duration,
        options: InstallOptions,
    ) -> JobResult {
        let mut job = JobRun::install(targets, budget);
        match self.install_steps(&mut job, options) {
            Ok(Some(transaction)) => self.verify_from_package_db(job, transaction),
            Ok(None) => job.finish(None, None),
            Err(stop) => job.stop(stop),
        }
    }

    /// The steps up to and including the transaction; `None` when nothing needs installing.
    fn install_steps<'t>(
        &self,
        job: &mut JobRun<'t>,
        options: InstallOptions,
    ) -> Result<Option<Transaction<'t>>, BackendError> {
        let before = self.read_package_db(job)?;
        let todo = self.settle_untouched_targets(job, &before, options, Hold::describe);
        if todo.remaining.is_empty() {
            return Ok(None);
        }
        // Health before acting: dnf 4 would wait forever for another dnf's lock, and would
        // build on a database an interrupted transaction left with two versions of a package.
        self.wait_for_locks(job, self.lock_wait, "nothing was installed")?;
        self.refuse_interrupted_state(job, &before)
            .inspect_err(|_| {
                warn!(
                    class = "interrupted_state",
                    "rpm database interrupted; nothing installed"
                );
            })?;
        let names: Vec<&str> = todo.remaining.iter().map(|t| t.name.as_str()).collect();
        let candidates = self.refresh_candidates(
            job,
            &names,
            &override_flags(&todo.overridden),
            "refreshing the repository metadata failed; nothing was installed",
        )?;
        let plan = self.resolve_plan(job, &todo.remaining, &candidates);
        if plan.is_empty() {
            return Ok(None);
        }
        let mut overridden = todo.overridden;
        overridden.retain(|(t, _)| plan.iter().any(|p| p.target.name == t.name));
        let install = self.run_transaction(job, &plan, &overridden);
        Ok(Some(Transaction {
            before,
            plan,
            overridden,
            install,
        }))
    }

    /// One transaction for every planned target; nothing may be removed.
    fn run_transaction(
        &self,
        job: &mut JobRun,
        plan: &[Planned],
        overridden: &[(&PackageTarget, Hold)],
    ) -> CommandOutput {
        let specs: Vec<&str> = plan.iter().map(|p| p.spec.as_str()).collect();
        if !overridden.is_empty() {
            let names: Vec<&str> = overridden.iter().map(|(t, _)| t.name.as_str()).collect();
            job.log.note(&format!(
                "holds overridden by the deployment (respect_holds: false): {}",
                names.join(" ")
            ));
        }
        let mut args = override_flags(overridden);
        args.extend([
            "--best",
            "--setopt=skip_if_unavailable=False",
            "--setopt=clean_requirements_on_remove=False",
            "upgrade",
        ]);
        args.extend(specs.iter().copied());
        info!(packages = %specs.join(" "), "installing");
        self.dnf(false, &args, job.deadline, &mut job.log)
    }

    /// The rpm database decides each planned target's state (never dnf's exit code); then
    /// overridden holds are kept.
    fn verify_from_package_db(&self, mut job: JobRun, tx: Transaction) -> JobResult {
        let after = self.rpm_query(Instant::now() + INSPECT_BUDGET, &mut job.log);
        let install = &tx.install;
        let run = RunEvidence {
            exit_code: install.exit_code,
            stdout: &install.stdout,
            stderr: &install.stderr,
            timed_out: install.timed_out,
        };
        let mut findings = classify_dnf(&install.stdout, &install.stderr, install.exit_code);
        let spec_names: Vec<(String, String)> = tx
            .plan
            .iter()
            .map(|p| (p.spec.clone(), p.target.name.clone()))
            .collect();
        attribute_specs(&mut findings, &spec_names);
        let mut reboot = reboot_required_packages(&self.paths);
        reboot.extend(REBOOT_PACKAGES.iter().map(|s| s.to_string()));
        let mut results: BTreeMap<String, PackageResult> = BTreeMap::new();
        for p in &tx.plan {
            let t = p.target;
            let b = installed(&tx.before, &t.name);
            let r = match &after {
                Ok(after) => {
                    let a = installed(after, &t.name);
                    let d = decide_rpm(
                        &t.name,
                        &p.intended,
                        b.as_deref(),
                        a.as_deref(),
                        &run,
                        &findings,
                        &reboot,
                    );
                    PackageResult {
                        package: t.name.clone(),
                        state: d.state,
                        class: d.class,
                        from_version: b,
                        to_version: Some(p.intended.clone()),
                        installed_version: a,
                        evidence: d.evidence,
                    }
                }
                Err(e) => PackageResult {
                    package: t.name.clone(),
                    state: PackageState::Failed,
                    class: Some(FailureClass::AgentError),
                    from_version: b.clone(),
                    to_version: Some(p.intended.clone()),
                    installed_version: b,
                    evidence: vec![e.to_string()],
                },
            };
            results.insert(t.name.clone(), r);
        }
        self.keep_overridden_holds(&mut job, &tx.overridden, &mut results);
        for r in results.into_values() {
            job.set(r);
        }
        let error = after.err().map(|e| e.to_string());
        job.finish(install.exit_code, error)
    }

    /// An overridden hold stays a hold: a versionlock moves to the version now installed,
    /// an exclude pattern stays as it is. Says so first in each overridden target's evidence.
    fn keep_overridden_holds(
        &self,
        job: &mut JobRun,
        overridden: &[(&PackageTarget, Hold)],
        results: &mut BTreeMap<String, PackageResult>,
    ) {
        let relock: Vec<&str> = overridden
            .iter()
            .filter(|(t, h)| {
                *h == Hold::Versionlock
                    && results
                        .get(&t.name)
                        .is_some_and(|r| r.installed_version != r.from_version)
            })
            .map(|(t, _)| t.name.as_str())
            .collect();
        let relocked = self.relock(&relock, &mut job.log);
        for (t, hold) in overridden {
            let Some(r) = results.get_mut(&t.name) else {
                continue;
            };
            let kept = match (hold, relocked.get(&t.name)) {
                (Hold::Versionlock, Some(line)) => line.clone(),
                (Hold::Versionlock, None) => "the versionlock is kept".to_owned(),
                (Hold::Exclude { .. }, _) => "the exclude is kept".to_owned(),
            };
            r.evidence.insert(
                0,
                format!(
                    "{}; installed anyway because the deployment overrides holds (respect_holds: false); {kept}",
                    hold.describe()
                ),
            );
        }
    }
}
