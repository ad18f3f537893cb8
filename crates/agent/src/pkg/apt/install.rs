//! The apt install, as named steps: read the package database, settle what needs nothing,
//! wait for the locks, refuse an interrupted dpkg, refresh the lists, resolve the plan, run
//! one transaction, keep overridden holds, and judge every package from dpkg afterwards.

use super::*;
use crate::exec::CommandOutput;
use crate::inventory::reboot_required_packages;
use patchwarden_core::outcome::{decide_with_findings, RunEvidence};
use patchwarden_wire::agent::PackageResult;
use std::collections::BTreeMap;
use tracing::info;

/// A target with the version it is to be upgraded to.
type Planned<'t> = (&'t PackageTarget, String);

/// What the transaction did, for the verdict.
struct Transaction<'t> {
    before: Vec<DpkgEntry>,
    plan: Vec<Planned<'t>>,
    /// Held targets in the plan whose hold the deployment overrides.
    overridden: Vec<&'t str>,
    /// What became of their holds (set again or kept), when there are any.
    kept_holds: Option<String>,
    install: CommandOutput,
}

impl<R: Runner> Apt<R> {
    /// Upgrades the installed `targets` within `budget`; every package's end state as dpkg
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
        let todo = self.settle_untouched_targets(job, &before, options, "held by apt-mark hold");
        if todo.remaining.is_empty() {
            return Ok(None);
        }
        // Health before acting: another apt or dpkg at work, or a database an earlier run
        // left half-done, would otherwise surface as confusing errors of the commands below.
        self.wait_for_locks(job, self.lock_wait, "nothing was installed")?;
        self.refuse_interrupted_state(job, &before)
            .inspect_err(|_| {
                warn!(
                    class = "interrupted_state",
                    "dpkg was interrupted; nothing installed"
                );
            })?;
        self.refresh_lists(job, &[], "apt-get update failed; nothing was installed")?;
        let plan = self.resolve_plan(job, &before, todo.remaining);
        if plan.is_empty() {
            return Ok(None);
        }
        let overridden: Vec<&str> = todo
            .overridden
            .into_iter()
            .filter(|n| plan.iter().any(|(t, _)| t.name == *n))
            .collect();
        let install = self.run_transaction(job, &plan, &overridden);
        // An overridden hold stays a hold: set it again should the install have cleared it.
        let kept_holds =
            (!overridden.is_empty()).then(|| self.keep_holds(&overridden, &mut job.log));
        Ok(Some(Transaction {
            before,
            plan,
            overridden,
            kept_holds,
            install,
        }))
    }

    /// The version to install: the job's, or apt's candidate. A target without a candidate
    /// is `package_not_found`; one already at the newest version `not_applicable`.
    fn resolve_plan<'t>(
        &self,
        job: &mut JobRun<'t>,
        before: &[DpkgEntry],
        remaining: Vec<&'t PackageTarget>,
    ) -> Vec<Planned<'t>> {
        let without_version: Vec<&str> = remaining
            .iter()
            .filter(|t| t.version.is_none())
            .map(|t| t.name.as_str())
            .collect();
        let mut candidates: BTreeMap<String, Option<String>> = BTreeMap::new();
        if !without_version.is_empty() {
            let mut argv = vec!["apt-cache", "policy"];
            argv.extend(without_version.iter().copied());
            let policy = self.run(&argv, job.deadline, &mut job.log);
            for p in parse_apt_cache_policy(&policy.stdout) {
                candidates.insert(p.name, p.candidate);
            }
        }
        let mut plan = Vec::new();
        for t in remaining {
            let intended = match &t.version {
                Some(v) => v.clone(),
                None => match candidates.get(&t.name).cloned().flatten() {
                    Some(c) => c,
                    None => {
                        job.settle(
                            t,
                            PackageState::Failed,
                            Some(FailureClass::PackageNotFound),
                            None,
                            vec![format!(
                                "apt-cache policy shows no installation candidate for {}",
                                t.name
                            )],
                        );
                        continue;
                    }
                },
            };
            let db = db_of(before, &t.name);
            let installed = db.version.clone().unwrap_or_default();
            let clean = db.status.as_deref().is_some_and(is_clean_status);
            let newest = matches!(
                compare_deb(&installed, &intended),
                Some(Ordering::Equal | Ordering::Greater)
            );
            if t.version.is_none() && clean && newest {
                job.settle(
                    t,
                    PackageState::NotApplicable,
                    None,
                    Some(intended.clone()),
                    vec![format!(
                        "already at the newest available version {installed}"
                    )],
                );
                continue;
            }
            plan.push((t, intended));
        }
        plan
    }

    /// One transaction for every planned target, nothing removed. apt itself waits for the
    /// frontend lock should another apt have taken it since the lock wait.
    fn run_transaction(
        &self,
        job: &mut JobRun,
        plan: &[Planned],
        overridden: &[&str],
    ) -> CommandOutput {
        let specs: Vec<String> = plan
            .iter()
            .map(|(t, v)| format!("{}={v}", t.name))
            .collect();
        let lock_timeout = format!(
            "DPkg::Lock::Timeout={}",
            self.lock_wait
                .min(job.deadline.saturating_duration_since(Instant::now()))
                .as_secs()
        );
        let mut argv = vec!["apt-get", "install", "-y", "--no-remove", "--only-upgrade"];
        if !overridden.is_empty() {
            argv.push("--allow-change-held-packages");
            job.log.note(&format!(
                "holds overridden by the deployment (respect_holds: false): {}",
                overridden.join(" ")
            ));
        }
        argv.extend(DPKG_OPTIONS);
        argv.extend(["-o", lock_timeout.as_str()]);
        argv.extend(specs.iter().map(String::as_str));
        info!(packages = %specs.join(" "), "installing");
        self.run(&argv, job.deadline, &mut job.log)
    }

    /// The package database decides each planned target's state (never the exit code alone).
    fn verify_from_package_db(&self, mut job: JobRun, tx: Transaction) -> JobResult {
        let inspect = Instant::now() + crate::pkg::common::INSPECT_BUDGET;
        let plan_names: Vec<&str> = tx.plan.iter().map(|(t, _)| t.name.as_str()).collect();
        let after = self.dpkg_query(&plan_names, inspect, &mut job.log);
        let reboot = reboot_required_packages(&self.paths);
        let install = &tx.install;
        let run = RunEvidence {
            exit_code: install.exit_code,
            stdout: &install.stdout,
            stderr: &install.stderr,
            timed_out: install.timed_out,
        };
        let findings = classify_apt(&install.stdout, &install.stderr, install.exit_code);
        let after_kill = self.note_interrupted_by_kill(&mut job, install);
        for (t, intended) in &tx.plan {
            let b = db_of(&tx.before, &t.name);
            let (state, class, mut evidence, installed_version) = match &after {
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
                    vec![e.to_string()],
                    None,
                ),
            };
            if let (true, Some(kept)) = (tx.overridden.contains(&t.name.as_str()), &tx.kept_holds) {
                evidence.insert(
                    0,
                    format!(
                        "held by apt-mark hold; installed anyway because the deployment overrides holds (respect_holds: false); {kept}"
                    ),
                );
            }
            job.set(PackageResult {
                package: t.name.clone(),
                state,
                class,
                from_version: b.version.clone(),
                to_version: Some(intended.clone()),
                installed_version,
                evidence,
            });
        }
        let error = after.err().map(|e| e.to_string());
        job.finish(install.exit_code, error)
    }

    /// A kill in the middle of dpkg leaves its journal behind: says so (the next run will
    /// find the database interrupted); the line, for the evidence of timed-out packages.
    fn note_interrupted_by_kill(
        &self,
        job: &mut JobRun,
        install: &CommandOutput,
    ) -> Option<String> {
        if !(install.timed_out && journal_entries(&self.paths) > 0) {
            return None;
        }
        let line = format!(
            "after the kill dpkg's journal ({DPKG_JOURNAL}) is not empty: the package database is left interrupted and needs `dpkg --configure -a`"
        );
        job.log.note(&line);
        Some(line)
    }
}
