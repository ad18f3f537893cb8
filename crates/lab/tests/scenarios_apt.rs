//! The apt acceptance scenarios of issue 3, one test per scenario, on real lab hosts: each
//! builds its own packages and repository, runs the real agent in a host against the real
//! server process, deploys with the operator CLI, and asserts the reported state, class and
//! decisive evidence line. Every row of every scenario is also checked against `dpkg-query`
//! inside the host ([`check_against_dpkg`]): a row is never `verified` when dpkg disagrees.
//! Needs root (skips with a printed reason otherwise).

use anyhow::{bail, Context, Result};
use patchwarden_lab::fleet::{
    enroll_agent, install_agent, run_agent_once, wait_until, ServerProcess,
};
use patchwarden_lab::{require_lab, AptRepo, BaseRoot, DebPackage, Host, HostProcess};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A postinst that marks its start (so a test knows dpkg is inside it) and then sleeps.
const SLOW_POSTINST: &str = "#!/bin/sh\ntouch /run/pw-slow-started\nsleep 120\n";
const SLOW_MARKER: &str = "/run/pw-slow-started";

/// pw-ok 1.0 and 2.0: a clean upgrade.
fn add_ok(repo: &AptRepo) -> Result<()> {
    for v in ["1.0", "2.0"] {
        repo.add(&DebPackage::new("pw-ok", v).file("/usr/share/pw-ok/version", v))?;
    }
    Ok(())
}

/// The server, one host with `repo` configured and `preinstalled` installed, the agent
/// enrolled and its first inventory reported.
struct Scenario {
    server: ServerProcess,
    host: Host,
}

impl Scenario {
    fn new(name: &str, repo: &AptRepo, preinstalled: &[&str]) -> Result<Scenario> {
        let base = BaseRoot::get(&[])?;
        let server = ServerProcess::start()?;
        let host = Host::create(&base, name)?;
        if repo.is_signed() {
            repo.install_key(&host)?;
        }
        host.set_apt_sources(&[repo.source_line()])?;
        host.exec_ok(&["apt-get", "update"])?;
        if !preinstalled.is_empty() {
            let mut args = vec!["apt-get", "install", "-y"];
            args.extend_from_slice(preinstalled);
            host.exec_ok(&args)?;
        }
        install_agent(&host)?;
        let token = server.enroll_token(&[])?;
        enroll_agent(&host, server.url(), &token)?;
        let s = Scenario { server, host };
        s.agent_once(&[])?;
        Ok(s)
    }

    /// `patchwarden-agent run --once` in the host; its stderr (the agent's log).
    fn agent_once(&self, flags: &[&str]) -> Result<String> {
        let out = run_agent_once(&self.host, flags)?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!("agent run --once failed ({}): {log}", out.status);
        }
        Ok(log)
    }

    /// Creates a deployment of `packages` (NAME or NAME=VERSION) to every device, with extra
    /// `deploy` flags; returns its id.
    fn deploy(&self, packages: &[&str], extra: &[&str]) -> Result<String> {
        let mut args = vec!["deploy", "--all"];
        for p in packages {
            args.extend_from_slice(&["--package", p]);
        }
        args.extend_from_slice(extra);
        Ok(self.server.cli_ok(&args)?.trim().to_owned())
    }

    fn show(&self, id: &str) -> Result<Value> {
        self.server.cli_json(&["deployment", "show", id, "--json"])
    }

    /// Deploys, runs the agent once (with `agent_flags`), and returns the deployment view,
    /// already checked against dpkg.
    fn deploy_and_run(
        &self,
        packages: &[&str],
        extra: &[&str],
        agent_flags: &[&str],
    ) -> Result<Value> {
        let id = self.deploy(packages, extra)?;
        let log = self.agent_once(agent_flags)?;
        let view = self.show(&id)?;
        if view["status"] != "completed" {
            bail!("deployment not completed after one agent run: {view:#}\nagent log:\n{log}");
        }
        check_against_dpkg(&self.host, &view)?;
        dump(&view);
        Ok(view)
    }
}

/// With `PATCHWARDEN_SCENARIO_DUMP=1`, prints each deployment view (rows and job output):
/// how the fixtures of patchwarden-core were captured from these scenarios.
fn dump(view: &Value) {
    if std::env::var_os("PATCHWARDEN_SCENARIO_DUMP").is_some() {
        eprintln!("{view:#}\n--- job output ---\n{}", job_output(view));
    }
}

/// The one truth check, run on every row of every scenario: what the row says is installed is
/// what dpkg says, and a `verified` (or `pending_reboot`) row has dpkg showing the intended
/// version cleanly installed.
fn check_against_dpkg(host: &Host, view: &Value) -> Result<()> {
    let rows = view["results"].as_array().context("results")?;
    if rows.is_empty() {
        bail!("no result rows: {view:#}");
    }
    for row in rows {
        let package = row["package"].as_str().context("package")?;
        let dpkg = host.dpkg_version(package)?;
        let reported = row["installed_version"].as_str();
        let actual = dpkg.as_ref().map(|d| d.version.as_str());
        if reported != actual {
            bail!("row reports {package} at {reported:?} but dpkg shows {dpkg:?}: {row:#}");
        }
        let state = row["state"].as_str().unwrap_or("");
        if state == "verified" || state == "pending_reboot" {
            let ok = dpkg.as_ref().is_some_and(|d| {
                d.is_ok() && Some(d.version.as_str()) == row["to_version"].as_str()
            });
            if !ok {
                bail!("{package} reported {state} but dpkg shows {dpkg:?}: {row:#}");
            }
        }
    }
    Ok(())
}

fn row<'a>(view: &'a Value, package: &str) -> &'a Value {
    view["results"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["package"] == package))
        .unwrap_or_else(|| panic!("no row for {package}: {view:#}"))
}

/// Asserts a row's state, class and that one evidence line contains `needle`.
fn expect(view: &Value, package: &str, state: &str, class: Option<&str>, needle: &str) {
    let r = row(view, package);
    assert_eq!(r["state"], state, "{package}: {r:#}\n{}", job_output(view));
    match class {
        Some(c) => assert_eq!(r["class"], c, "{package}: {r:#}\n{}", job_output(view)),
        None => assert!(r["class"].is_null(), "{package}: {r:#}"),
    }
    let evidence: Vec<&str> = r["evidence"]
        .as_array()
        .map(|e| e.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        evidence.iter().any(|e| e.contains(needle)),
        "{package}: no evidence line contains {needle:?}: {evidence:#?}\n{}",
        job_output(view)
    );
}

fn job_output(view: &Value) -> String {
    view["jobs"]
        .as_array()
        .map(|jobs| {
            jobs.iter()
                .map(|j| j["output"].as_str().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Starts `apt-get install -y SPEC` in the host and returns once its postinst (the
/// [`SLOW_POSTINST`]) is running, dpkg holding its locks.
fn start_slow_install(host: &Host, spec: &str) -> Result<HostProcess> {
    let apt = host.spawn(&["apt-get", "install", "-y", spec], &[])?;
    let marker = host.path(SLOW_MARKER)?;
    wait_until(
        Duration::from_secs(30),
        "the slow postinst to start",
        || Ok(marker.exists()),
    )
    .with_context(|| apt.logs())?;
    Ok(apt)
}

fn slow_repo() -> Result<AptRepo> {
    let repo = AptRepo::new()?;
    add_ok(&repo)?;
    repo.add(&DebPackage::new("pw-slow", "1.0"))?;
    repo.add(&DebPackage::new("pw-slow", "2.0").postinst(SLOW_POSTINST))?;
    repo.publish()?;
    Ok(repo)
}

#[test]
fn lab_apt_plain_upgrade_is_verified() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    add_ok(&repo)?;
    repo.publish()?;
    let s = Scenario::new("apt-plain", &repo, &["pw-ok=1.0"])?;
    let view = s.deploy_and_run(&["pw-ok"], &[], &[])?;
    expect(&view, "pw-ok", "verified", None, "dpkg: pw-ok 2.0 ii");
    let r = row(&view, "pw-ok");
    assert_eq!(
        (r["from_version"].as_str(), r["to_version"].as_str()),
        (Some("1.0"), Some("2.0"))
    );
    Ok(())
}

#[test]
fn lab_apt_postinst_exit_1_is_install_script_failed() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new("pw-postfail", "1.0"))?;
    repo.add(
        &DebPackage::new("pw-postfail", "2.0")
            .postinst("#!/bin/sh\necho 'pw-postfail: configuring failed on purpose' >&2\nexit 1\n"),
    )?;
    repo.publish()?;
    let s = Scenario::new("apt-postfail", &repo, &["pw-postfail=1.0"])?;
    let view = s.deploy_and_run(&["pw-postfail=2.0"], &[], &[])?;
    expect(
        &view,
        "pw-postfail",
        "failed",
        Some("install_script_failed"),
        "post-installation script subprocess returned error exit status 1",
    );
    let dpkg = s
        .host
        .dpkg_version("pw-postfail")?
        .context("known to dpkg")?;
    assert_eq!((dpkg.version.as_str(), dpkg.status.as_str()), ("2.0", "iF"));
    Ok(())
}

#[test]
fn lab_apt_dpkg_killed_mid_install_then_next_run_is_interrupted_state() -> Result<()> {
    require_lab!(Ok(()));
    let repo = slow_repo()?;
    let s = Scenario::new("apt-interrupted", &repo, &["pw-ok=1.0", "pw-slow=1.0"])?;
    // Power loss in the middle of a postinst: the namespace dies with dpkg in it.
    let mut apt = start_slow_install(&s.host, "pw-slow=2.0")?;
    apt.kill()?;
    assert!(
        s.host
            .path("/var/lib/dpkg/updates")?
            .read_dir()?
            .next()
            .is_some(),
        "dpkg's journal should be left behind"
    );
    let view = s.deploy_and_run(&["pw-ok=2.0"], &[], &[])?;
    expect(
        &view,
        "pw-ok",
        "failed",
        Some("interrupted_state"),
        "dpkg was interrupted",
    );
    expect(
        &view,
        "pw-ok",
        "failed",
        Some("interrupted_state"),
        "dpkg: pw-slow 2.0 iF",
    );
    // Nothing was attempted on top of the broken database.
    let output = job_output(&view);
    assert!(!output.contains("$ apt-get install"), "{output}");
    Ok(())
}

#[test]
fn lab_apt_lock_held_beyond_the_wait_limit_is_lock_held() -> Result<()> {
    require_lab!(Ok(()));
    let repo = slow_repo()?;
    let s = Scenario::new("apt-lock", &repo, &["pw-ok=1.0", "pw-slow=1.0"])?;
    let apt = start_slow_install(&s.host, "pw-slow=2.0")?;
    let start = Instant::now();
    let view = s.deploy_and_run(&["pw-ok=2.0"], &[], &["--lock-wait", "3"])?;
    let took = start.elapsed();
    expect(
        &view,
        "pw-ok",
        "failed",
        Some("lock_held"),
        "/var/lib/dpkg/lock-frontend is locked",
    );
    expect(
        &view,
        "pw-ok",
        "failed",
        Some("lock_held"),
        "still held after waiting 3 s",
    );
    assert!(
        took >= Duration::from_secs(3),
        "the agent did not wait: {took:?}"
    );
    drop(apt);
    Ok(())
}

#[test]
fn lab_apt_lock_released_within_the_wait_limit_is_waited_for() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    add_ok(&repo)?;
    repo.add(&DebPackage::new("pw-slow", "1.0"))?;
    repo.add(
        &DebPackage::new("pw-slow", "2.0")
            .postinst("#!/bin/sh\ntouch /run/pw-slow-started\nsleep 4\n"),
    )?;
    repo.publish()?;
    let s = Scenario::new("apt-lock-wait", &repo, &["pw-ok=1.0", "pw-slow=1.0"])?;
    let _apt = start_slow_install(&s.host, "pw-slow=2.0")?;
    let view = s.deploy_and_run(&["pw-ok=2.0"], &[], &["--lock-wait", "60"])?;
    expect(&view, "pw-ok", "verified", None, "dpkg: pw-ok 2.0 ii");
    let output = job_output(&view);
    assert!(output.contains("it was released after"), "{output}");
    Ok(())
}

#[test]
fn lab_apt_depends_on_a_missing_package_is_dependency_conflict() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new("pw-dep", "1.0"))?;
    repo.add(&DebPackage::new("pw-dep", "2.0").depends("pw-missing (>= 1)"))?;
    repo.publish()?;
    let s = Scenario::new("apt-dep", &repo, &["pw-dep=1.0"])?;
    let view = s.deploy_and_run(&["pw-dep=2.0"], &[], &[])?;
    expect(
        &view,
        "pw-dep",
        "failed",
        Some("dependency_conflict"),
        "Depends: pw-missing (>= 1) but it is not installable",
    );
    Ok(())
}

#[test]
fn lab_apt_two_packages_owning_one_file_is_dependency_conflict() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new("pw-clash-b", "1.0").file("/usr/share/pw-clash/shared", "b"))?;
    repo.add(&DebPackage::new("pw-clash-a", "1.0"))?;
    repo.add(&DebPackage::new("pw-clash-a", "2.0").file("/usr/share/pw-clash/shared", "a"))?;
    repo.publish()?;
    let s = Scenario::new("apt-clash", &repo, &["pw-clash-a=1.0", "pw-clash-b=1.0"])?;
    let view = s.deploy_and_run(&["pw-clash-a=2.0"], &[], &[])?;
    expect(
        &view,
        "pw-clash-a",
        "failed",
        Some("dependency_conflict"),
        "trying to overwrite '/usr/share/pw-clash/shared', which is also in package pw-clash-b",
    );
    Ok(())
}

#[test]
fn lab_apt_repository_down_is_repo_unreachable() -> Result<()> {
    require_lab!(Ok(()));
    let mut repo = AptRepo::new()?;
    add_ok(&repo)?;
    repo.publish()?;
    let s = Scenario::new("apt-repo-down", &repo, &["pw-ok=1.0"])?;
    repo.stop()?;
    let view = s.deploy_and_run(&["pw-ok=2.0"], &[], &[])?;
    expect(
        &view,
        "pw-ok",
        "failed",
        Some("repo_unreachable"),
        "Connection refused",
    );
    Ok(())
}

#[test]
fn lab_apt_packages_index_modified_after_signing_is_repo_invalid() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new_signed()?;
    add_ok(&repo)?;
    repo.publish()?;
    let s = Scenario::new("apt-tampered", &repo, &["pw-ok=1.0"])?;
    // A new signed Release (so that apt fetches the index again), then the index is edited
    // after signing: same size, other hashes.
    repo.add(&DebPackage::new("pw-ok", "3.0"))?;
    repo.publish()?;
    repo.tamper("Packages", "Version: 2.0", "Version: 2.1")?;
    let view = s.deploy_and_run(&["pw-ok=2.0"], &[], &[])?;
    expect(
        &view,
        "pw-ok",
        "failed",
        Some("repo_invalid"),
        "Hash Sum mismatch",
    );
    Ok(())
}

#[test]
fn lab_apt_packages_index_404_is_repo_invalid() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new_signed()?;
    add_ok(&repo)?;
    repo.publish()?;
    let s = Scenario::new("apt-index-404", &repo, &["pw-ok=1.0"])?;
    // A new signed Release lists a new index, which is then missing.
    repo.add(&DebPackage::new("pw-ok", "3.0"))?;
    repo.publish()?;
    repo.remove_file("Packages")?;
    let view = s.deploy_and_run(&["pw-ok=2.0"], &[], &[])?;
    expect(&view, "pw-ok", "failed", Some("repo_invalid"), "404");
    Ok(())
}

#[test]
fn lab_apt_expired_signed_release_is_repo_invalid() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new_signed()?;
    add_ok(&repo)?;
    repo.publish()?;
    let s = Scenario::new("apt-expired", &repo, &["pw-ok=1.0"])?;
    repo.set_valid_until(Some("Sat, 01 Jan 2000 00:00:00 UTC"));
    repo.publish()?;
    let view = s.deploy_and_run(&["pw-ok=2.0"], &[], &[])?;
    expect(&view, "pw-ok", "failed", Some("repo_invalid"), "is expired");
    Ok(())
}

#[test]
fn lab_apt_version_not_in_the_repository_is_package_not_found() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    add_ok(&repo)?;
    repo.publish()?;
    let s = Scenario::new("apt-no-version", &repo, &["pw-ok=1.0"])?;
    let view = s.deploy_and_run(&["pw-ok=9.9"], &[], &[])?;
    expect(
        &view,
        "pw-ok",
        "failed",
        Some("package_not_found"),
        "Version '9.9' for 'pw-ok' was not found",
    );
    Ok(())
}

/// A held package is `skipped` with class `held_back` (documented in README and
/// ARCHITECTURE.md): the hold is the administrator's decision, not a failure to fix.
#[test]
fn lab_apt_package_held_with_apt_mark_is_skipped_held_back() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    add_ok(&repo)?;
    repo.publish()?;
    let s = Scenario::new("apt-held", &repo, &["pw-ok=1.0"])?;
    s.host.exec_ok(&["apt-mark", "hold", "pw-ok"])?;
    let view = s.deploy_and_run(&["pw-ok=2.0"], &[], &[])?;
    expect(
        &view,
        "pw-ok",
        "skipped",
        Some("held_back"),
        "held by apt-mark hold",
    );
    let dpkg = s.host.dpkg_version("pw-ok")?.context("pw-ok")?;
    assert_eq!((dpkg.version.as_str(), dpkg.status.as_str()), ("1.0", "hi"));
    Ok(())
}

#[test]
fn lab_apt_full_package_cache_is_disk_full() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new("pw-big", "1.0"))?;
    repo.add(&DebPackage::new("pw-big", "2.0").size_bytes(4 << 20))?;
    repo.publish()?;
    let s = Scenario::new("apt-disk-full", &repo, &["pw-big=1.0"])?;
    s.host.mount_tmpfs("/var/cache/apt/archives", 2 << 20)?;
    let view = s.deploy_and_run(&["pw-big=2.0"], &[], &[])?;
    expect(
        &view,
        "pw-big",
        "failed",
        Some("disk_full"),
        "You don't have enough free space in /var/cache/apt/archives/",
    );
    s.host.unmount_tmpfs("/var/cache/apt/archives")?;
    Ok(())
}

#[test]
fn lab_apt_postinst_past_the_time_budget_is_timeout() -> Result<()> {
    require_lab!(Ok(()));
    let repo = slow_repo()?;
    let s = Scenario::new("apt-timeout", &repo, &["pw-slow=1.0"])?;
    let start = Instant::now();
    let view = s.deploy_and_run(&["pw-slow=2.0"], &["--timeout", "5s"], &[])?;
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    expect(&view, "pw-slow", "failed", Some("timeout"), "time budget");
    // The database state after the kill is inspected and reported.
    expect(
        &view,
        "pw-slow",
        "failed",
        Some("timeout"),
        "dpkg: pw-slow 2.0 iF",
    );
    expect(
        &view,
        "pw-slow",
        "failed",
        Some("timeout"),
        "needs `dpkg --configure -a`",
    );
    let output = job_output(&view);
    assert!(
        output.contains("[killed: time budget exhausted]"),
        "{output}"
    );
    Ok(())
}

#[test]
fn lab_apt_reboot_required_is_pending_reboot_then_verified_after_reboot() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new("pw-reboot", "1.0"))?;
    repo.add(&DebPackage::new("pw-reboot", "2.0").reboot_required())?;
    repo.publish()?;
    let s = Scenario::new("apt-reboot", &repo, &["pw-reboot=1.0"])?;
    let id = s.deploy(&["pw-reboot=2.0"], &[])?;
    s.agent_once(&[])?;
    let view = s.show(&id)?;
    check_against_dpkg(&s.host, &view)?;
    expect(
        &view,
        "pw-reboot",
        "pending_reboot",
        Some("reboot_pending"),
        "reboot-required",
    );
    s.host.simulate_reboot()?;
    s.agent_once(&[])?;
    let view = s.show(&id)?;
    check_against_dpkg(&s.host, &view)?;
    expect(&view, "pw-reboot", "verified", None, "pw-reboot");
    Ok(())
}

#[test]
fn lab_apt_one_package_upgrades_while_another_postinst_fails() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    add_ok(&repo)?;
    repo.add(&DebPackage::new("pw-postfail", "1.0"))?;
    repo.add(&DebPackage::new("pw-postfail", "2.0").postinst("#!/bin/sh\nexit 1\n"))?;
    repo.publish()?;
    let s = Scenario::new("apt-mixed", &repo, &["pw-ok=1.0", "pw-postfail=1.0"])?;
    let view = s.deploy_and_run(&["pw-ok=2.0", "pw-postfail=2.0"], &[], &[])?;
    expect(&view, "pw-ok", "verified", None, "dpkg: pw-ok 2.0 ii");
    expect(
        &view,
        "pw-postfail",
        "failed",
        Some("install_script_failed"),
        "installed pw-postfail package post-installation script subprocess returned error exit status 1",
    );
    // apt exited 100 for the whole run; the package database decided per package.
    assert_eq!(row(&view, "pw-ok")["exit_code"], 100, "{view:#}");
    Ok(())
}
